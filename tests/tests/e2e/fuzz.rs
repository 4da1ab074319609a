//! The API fuzzer: Schemathesis (PyPI, pinned by
//! `infra/install-protocol-clients.sh`) generates requests from
//! `/openapi.json` and holds every answer to the document: no server error,
//! every status documented, every body and content type as described,
//! schema-breaking requests refused. Stateful: it follows the document's
//! links (an upload made, then read, sent to, completed, aborted). A fixed
//! seed and number of cases, so a run repeats; `load/fuzz.sh` runs longer.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use media_e2e::both_sets;
use media_e2e::{BackendSet, ServiceProcess, free_port, test_settings};

const SECRET: &str = "fuzz-test-secret-long-enough-0123456789";
/// The seed, and the cases per operation and phase, of the test command's
/// run; `MEDIA_FUZZ_SEED` and `MEDIA_FUZZ_CASES` change them (`load/fuzz.sh`).
const SEED: &str = "20261126";
const CASES: &str = "25";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn schemathesis() -> PathBuf {
    media_e2e::venv_program("schemathesis")
}

both_sets!(schemathesis_finds_no_failure);
async fn schemathesis_finds_no_failure(set: BackendSet) {
    let (settings, _dir) = test_settings(set).await;
    let service = ServiceProcess::start(&settings, free_port(), SECRET).await;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let work = tempfile::tempdir().expect("tempdir");
    let (seed, cases) = (
        setting("MEDIA_FUZZ_SEED", SEED),
        setting("MEDIA_FUZZ_CASES", CASES),
    );
    // About 2 s per case per operation set, and room to spare.
    let limit = Duration::from_secs(120 + 20 * cases.parse::<u64>().unwrap_or(25));
    let out = tokio::process::Command::new(schemathesis())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", service.base))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", service.admin_token()),
        ])
        .args(["--seed", &seed, "--max-examples", &cases, "--workers", "1"])
        .args(["--request-timeout", "30", "--no-color"])
        .args(["--generation-database", "none"])
        .env("SCHEMATHESIS_HOOKS", "fuzz_hooks")
        .env(
            "PYTHONPATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients"),
        )
        .current_dir(work.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, out)
        .await
        .expect("Schemathesis ends in time")
        .expect("Schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // Its summary goes to the test output whether the test passes or not.
    let summary = text.rfind("SUMMARY").map_or(text.as_ref(), |at| {
        &text[text[..at].rfind('\n').unwrap_or(0)..]
    });
    let _ = writeln!(
        std::io::stderr(),
        "\nSchemathesis on {set:?}, seed {seed}, {cases} cases:{summary}"
    );
    let log = service.kill_and_log().await;
    assert!(
        out.status.success(),
        "{set:?}: Schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !log.contains("panicked"),
        "{set:?}: the service panicked:\n{log}"
    );
}
