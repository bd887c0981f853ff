//! `magnetar admin schemas ...` as a separate process against `magnetar
//! standalone`: upload, get (latest, one version, all), compatibility and
//! delete, with the server's refusals as exit code 1 and their reason.

use std::process::Command;
use std::time::Duration;

use magnetar_testkit::{bin_path, PulsarService, Standalone};
use serde_json::{json, Value};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{} / {}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", out.stdout))
    }

    #[track_caller]
    fn refused(self, what: &str) {
        assert_eq!(self.code, 1, "{} / {}", self.stdout, self.stderr);
        assert!(
            self.stderr.contains(what),
            "{what:?} not in {}",
            self.stderr
        );
    }
}

fn run(url: &str, token: Option<&str>, args: &[&str]) -> Out {
    let mut cmd = Command::new(bin_path("magnetar"));
    cmd.arg("admin")
        .args(["--url", url, "--timeout", "30"])
        .args(args)
        .env_remove("MAGNETAR_TOKEN")
        .env_remove("MAGNETAR_ADMIN_URL");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.output().expect("run magnetar admin");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn avro(fields: Value) -> Value {
    let def = json!({"type": "record", "name": "Order", "fields": fields});
    json!({"type": "AVRO", "schema": def.to_string(), "properties": {"team": "a"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_schemas_upload_get_delete() {
    let mut s = Standalone::start();
    s.wait_ready(Duration::from_secs(60)).await;
    let url = s.web_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = |args: &[&str]| run(&url, None, args);
    let file = |name: &str, v: &Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).expect("write payload");
        p.to_string_lossy().into_owned()
    };
    let v1 = file("v1.json", &avro(json!([{"name": "id", "type": "long"}])));
    let v2 = file(
        "v2.json",
        &avro(json!([{"name": "id", "type": "long"}, {"name": "n", "type": "int", "default": 0}])),
    );
    let v3 = file(
        "v3.json",
        &avro(json!([{"name": "id", "type": "long"}, {"name": "m", "type": "int"}])),
    );
    let bad = file("bad.json", &json!({"type": "AVRO", "schema": "{nope"}));

    admin(&["schemas", "get", "orders"]).refused("404");
    let up = admin(&["schemas", "upload", "orders", "-f", &v1]).ok();
    assert!(up.stdout.contains("uploaded a schema to"), "{}", up.stdout);
    let got = admin(&["schemas", "get", "orders", "--json"]).json();
    assert_eq!(
        (&got["version"], &got["type"], &got["properties"]),
        (&json!(0), &json!("AVRO"), &json!({"team": "a"}))
    );
    // People get a table, not the JSON.
    let table = admin(&["schemas", "get", "orders"]).ok();
    assert!(table.stdout.contains("AVRO"), "{}", table.stdout);

    let c = admin(&["schemas", "compatibility", "orders", "-f", &v3, "--json"]).json();
    assert_eq!(c["compatibility"], json!(false), "{c}");
    admin(&["schemas", "upload", "orders", "-f", &v3]).refused("409");
    admin(&["schemas", "upload", "orders", "-f", &bad]).refused("400");
    admin(&["schemas", "upload", "orders", "-f", "/nonexistent.json"]).refused("cannot read");
    admin(&["schemas", "upload", "orders", "-f", &v2]).ok();

    let all = admin(&["schemas", "get", "orders", "--all-version", "--json"]).json();
    let versions: Vec<&Value> = all["getSchemaResponses"]
        .as_array()
        .map(|l| l.iter().map(|s| &s["version"]).collect())
        .unwrap_or_default();
    assert_eq!(versions, [&json!(0), &json!(1)], "{all}");
    let one = admin(&["schemas", "get", "orders", "--version", "0", "--json"]).json();
    assert_eq!(one["version"], json!(0));

    admin(&["schemas", "delete", "orders"]).ok();
    admin(&["schemas", "get", "orders"]).refused("404");
    admin(&["schemas", "delete", "orders"]).refused("404");

    // The namespace's policies: FORWARD lets v3 in after v1.
    admin(&["schemas", "upload", "orders", "-f", &v1]).ok();
    let ns = ["public/default"];
    let set = ["namespaces", "set-schema-compatibility-strategy"];
    admin(&[&set[..], &ns, &["-c", "forward"]].concat()).ok();
    let get = [
        "namespaces",
        "get-schema-compatibility-strategy",
        "public/default",
    ];
    assert_eq!(
        admin(&[&get[..], &["--json"]].concat()).json(),
        json!("FORWARD")
    );
    admin(&["schemas", "upload", "orders", "-f", &v3]).ok();
    admin(&[&set[..], &ns, &["-c", "FULL"]].concat()).ok();
    let auto = [
        "namespaces",
        "get-is-allow-auto-update-schema",
        "public/default",
        "--json",
    ];
    assert_eq!(admin(&auto).json(), json!(true));
    let off = [
        "namespaces",
        "set-is-allow-auto-update-schema",
        "public/default",
        "-d",
    ];
    admin(&off).ok();
    assert_eq!(admin(&auto).json(), json!(false));
    let enforce = [
        "namespaces",
        "set-schema-validation-enforce",
        "public/default",
        "-e",
    ];
    admin(&enforce).ok();
    let enforced = [
        "namespaces",
        "get-schema-validation-enforce",
        "public/default",
        "--json",
    ];
    assert_eq!(admin(&enforced).json(), json!(true));
}

/// With authentication on: reading a schema takes a produce or consume
/// permission on the topic, changing one the tenant's admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_admin_is_authorized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("secret.key");
    let key = key.to_str().expect("utf-8 path");
    let tokens = |args: &[&str]| {
        let out = Command::new(bin_path("magnetar"))
            .arg("tokens")
            .args(args)
            .output()
            .expect("run magnetar tokens");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    tokens(&["create-secret-key", "--output", key]);
    let admin = tokens(&["create", "--secret-key", key, "--subject", "admin"]);
    let user = tokens(&["create", "--secret-key", key, "--subject", "someone"]);
    let mut s = Standalone::start_with(&["--auth-secret-key", key, "--superuser-roles", "admin"]);
    s.wait_ready(Duration::from_secs(60)).await;
    let url = s.web_url();
    let payload = dir.path().join("v1.json");
    std::fs::write(
        &payload,
        avro(json!([{"name": "id", "type": "long"}])).to_string(),
    )
    .expect("write payload");
    let payload = payload.to_str().expect("utf-8 path");

    run(&url, None, &["schemas", "get", "t"]).refused("401");
    run(
        &url,
        Some(&user),
        &["schemas", "upload", "t", "-f", payload],
    )
    .refused("403");
    run(
        &url,
        Some(&admin),
        &["schemas", "upload", "t", "-f", payload],
    )
    .ok();
    run(&url, Some(&user), &["schemas", "get", "t"]).refused("403");
    let grant = [
        "namespaces",
        "grant-permission",
        "public/default",
        "--role",
        "someone",
    ];
    run(
        &url,
        Some(&admin),
        &[&grant[..], &["--actions", "consume"]].concat(),
    )
    .ok();
    run(&url, Some(&user), &["schemas", "get", "t"]).ok();
    run(&url, Some(&user), &["schemas", "delete", "t"]).refused("403");
    run(&url, Some(&admin), &["schemas", "delete", "t"]).ok();
}
