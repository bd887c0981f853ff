//! The few fields of an X.509 certificate Magnetar needs and rustls does not
//! expose: the validity period (to refuse an expired certificate at start)
//! and the subject's common name (the role of a client certificate, as
//! Pulsar's `AuthenticationProviderTls` takes it).
//!
//! A bounds-checked DER walk over the `TBSCertificate` fields up to the
//! subject; nothing after it (extensions, signature) is read. The chain
//! itself is verified by rustls/webpki, never here.

/// Why a certificate's DER could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct X509Error(pub &'static str);

/// What Magnetar reads from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject's first common name (OID 2.5.4.3), if it has one.
    pub subject_cn: Option<String>,
}

impl CertInfo {
    /// Parses a DER-encoded certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, X509Error> {
        parse(der).map_err(X509Error)
    }

    pub fn is_expired_at(&self, now_secs: i64) -> bool {
        now_secs > self.not_after
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One TLV: (tag, contents, what follows).
fn tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = buf.split_first().ok_or("truncated DER (tag)")?;
    let (&first, mut rest) = rest.split_first().ok_or("truncated DER (length)")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported DER length");
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated DER (contents)");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(
    buf: &'a [u8],
    want: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), &'static str> {
    let (tag, body, rest) = tlv(buf)?;
    if tag != want {
        return Err(what);
    }
    Ok((body, rest))
}

fn parse(der: &[u8]) -> Result<CertInfo, &'static str> {
    let (cert, _) = expect(der, SEQUENCE, "not a certificate (outer SEQUENCE)")?;
    let (tbs, _) = expect(cert, SEQUENCE, "not a certificate (TBSCertificate)")?;
    let mut rest = tbs;
    // version [0] EXPLICIT, absent for v1.
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    let (_, rest) = expect(rest, INTEGER, "no serial number")?;
    let (_, rest) = expect(rest, SEQUENCE, "no signature algorithm")?;
    let (_, rest) = expect(rest, SEQUENCE, "no issuer")?;
    let (validity, rest) = expect(rest, SEQUENCE, "no validity")?;
    let (subject, _) = expect(rest, SEQUENCE, "no subject")?;
    let (tag1, body1, vrest) = tlv(validity)?;
    let (tag2, body2, _) = tlv(vrest)?;
    let not_before = time(tag1, body1)?;
    let not_after = time(tag2, body2)?;
    Ok(CertInfo {
        not_before,
        not_after,
        subject_cn: common_name(subject)?,
    })
}

/// Seconds since the epoch of an UTCTime or GeneralizedTime (`Z` form, as
/// RFC 5280 requires).
fn time(tag: u8, body: &[u8]) -> Result<i64, &'static str> {
    let s = std::str::from_utf8(body).map_err(|_| "validity time is not ASCII")?;
    let s = s.strip_suffix('Z').ok_or("validity time is not UTC")?;
    let (year, rest) = match tag {
        UTC_TIME if s.len() == 12 => {
            let yy: i64 = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        GENERALIZED_TIME if s.len() == 14 => (digits(&s[..4])?, &s[4..]),
        _ => return Err("unsupported validity time format"),
    };
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let min = digits(&rest[6..8])?;
    let sec = digits(&rest[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err("validity time out of range");
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

fn digits(s: &str) -> Result<i64, &'static str> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("validity time has non-digits");
    }
    s.parse().map_err(|_| "validity time has non-digits")
}

/// `2026-12-07T15:04:05Z` for seconds since the epoch.
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first CN in a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_name(mut name: &[u8]) -> Result<Option<String>, &'static str> {
    while !name.is_empty() {
        let (rdn, rest) = expect(name, SET, "malformed subject")?;
        name = rest;
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (atv, rest) = expect(attrs, SEQUENCE, "malformed subject attribute")?;
            attrs = rest;
            let (oid, value) = expect(atv, OID, "malformed subject attribute")?;
            if oid != CN_OID {
                continue;
            }
            let (tag, body, _) = tlv(value)?;
            return Ok(Some(directory_string(tag, body)?));
        }
    }
    Ok(None)
}

fn directory_string(tag: u8, body: &[u8]) -> Result<String, &'static str> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (taken as Latin-1).
        0x0C | 0x13 | 0x16 => String::from_utf8(body.to_vec()).map_err(|_| "CN is not UTF-8"),
        0x14 => Ok(body.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2, big-endian.
        0x1E => {
            if !body.len().is_multiple_of(2) {
                return Err("malformed BMPString CN");
            }
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| "malformed BMPString CN")
        }
        _ => Err("unsupported CN string type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        for days in [-1000, 0, 11_017, 24_855, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_time(2_147_483_648), "2038-01-19T03:14:08Z");
    }

    #[test]
    fn times() {
        assert_eq!(time(UTC_TIME, b"700101000000Z"), Ok(0));
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Ok(2_524_607_999));
        assert_eq!(
            time(GENERALIZED_TIME, b"20380119031408Z"),
            Ok(2_147_483_648)
        );
        assert!(time(UTC_TIME, b"701301000000Z").is_err());
        assert!(time(UTC_TIME, b"7001010000Z").is_err());
        assert!(time(GENERALIZED_TIME, b"20380119031408+0100").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[0x30],
            &[0x30, 0x85, 0, 0, 0, 0, 0],
            &[0x30, 0x10, 0x30],
            &[0x30, 0x03, 0x30, 0x01, 0x02],
        ] {
            assert!(CertInfo::parse(bad).is_err(), "{bad:?}");
        }
    }
}
