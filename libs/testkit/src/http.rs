//! A minimal HTTP/1.1 GET for readiness checks and metric scrapes in tests (no
//! client library: what is tested is the server).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path` from `addr`; returns (status code, body).
pub async fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, None, timeout).await
}

/// `method path` with an optional JSON body; returns (status code, body).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let body = json.unwrap_or_default();
        let content = if json.is_some() {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("malformed HTTP response: {text:.80}")))?;
        let body = match text.split_once("\r\n\r\n") {
            Some((head, body))
                if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked") =>
            {
                dechunk(body)
            }
            Some((_, body)) => body.to_string(),
            None => String::new(),
        };
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{method} {addr}{path} timed out"),
        )
    })?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Value of an unlabelled Prometheus sample, e.g. `magnetar_meta_raft_term`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Cumulative bucket counts `(le, count)` of a Prometheus histogram, summed
/// over every scrape in `texts` (e.g. one per bookie).
pub fn histogram_buckets(texts: &[String], name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for text in texts {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            let Ok(count) = count.trim().parse::<f64>() else {
                continue;
            };
            match buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(b) => b.1 += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Cumulative bucket counts of the observations made between two scrapes of
/// the same histogram (`before` and `after` from `histogram_buckets`).
fn histogram_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - old)
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of the observations
/// made between two scrapes of the same histogram (`before` and `after` from
/// `histogram_buckets`): a coarse quantile, at the buckets' resolution.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta = histogram_delta(before, after);
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
}

/// How many observations made between two scrapes of the same histogram
/// were above `bound` (seconds), as far as the buckets tell: everything past
/// the first bucket whose upper bound reaches `bound`.
pub fn histogram_count_above(before: &[(f64, f64)], after: &[(f64, f64)], bound: f64) -> f64 {
    let delta = histogram_delta(before, after);
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    // Bucket bounds are products of floats: 0.0128 may be 0.012800000000000004.
    let within = delta
        .iter()
        .find(|(le, _)| *le >= bound * (1.0 - 1e-9))
        .map_or(total, |(_, n)| *n);
    (total - within).max(0.0)
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_difference_of_two_scrapes() {
        let scrape = |a: u32, b: u32, c: u32| {
            format!(
                "# TYPE h histogram\nh_bucket{{le=\"0.001\"}} {a}\nh_bucket{{le=\"0.002\"}} {b}\nh_bucket{{le=\"+Inf\"}} {c}\nh_count {c}\n"
            )
        };
        let before = histogram_buckets(&[scrape(5, 5, 5)], "h");
        // 100 new observations: 90 under 1 ms, 9 under 2 ms, 1 above.
        let after = histogram_buckets(&[scrape(50, 54, 55), scrape(45, 50, 50)], "h");
        assert_eq!(histogram_quantile(&before, &after, 0.5), Some(0.001));
        assert_eq!(histogram_quantile(&before, &after, 0.99), Some(0.002));
        assert_eq!(histogram_count_above(&before, &after, 0.001), 10.0);
        assert_eq!(histogram_count_above(&before, &after, 0.002), 1.0);
        assert_eq!(histogram_count_above(&before, &after, 0.0015), 1.0);
        assert_eq!(
            histogram_quantile(&before, &after, 1.0),
            Some(f64::INFINITY)
        );
        assert_eq!(histogram_quantile(&after, &after, 0.5), None);
    }
}
