//! `weftctl validate -f`: one line per resource, exit 1 when any is invalid.

use std::process::Command;

fn weftctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .output()
        .expect("run weftctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn istio_samples_validate_with_exit_zero() {
    let dir = &std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../../shared/corpus/istio-samples")
    .to_string_lossy()
    .to_string();
    let (code, out) = weftctl(&["validate", "-f", dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().count() > 50);
    assert!(
        out.lines()
            .all(|l| l.ends_with(": OK") || l.contains(": OK (warning") || l.contains("SKIPPED")),
        "{out}"
    );
}

#[test]
fn one_broken_resource_names_file_document_resource_field_and_message() {
    let dir = std::env::temp_dir().join(format!("weftctl-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mixed.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: good\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\n  namespace: shop\nspec:\n  hosts: [\"*\"]\n  http:\n  - route:\n    - destination:\n        host: reviews\n      weight: -5\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
    )
    .unwrap();
    let (code, out) = weftctl(&["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let f = file.display();
    assert_eq!(
        lines[0],
        format!("{f} doc 0: VirtualService default/good: OK")
    );
    assert!(
        lines[1].starts_with(&format!(
            "{f} doc 1: VirtualService shop/bad: ERROR spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"
        )),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("spec.http[0].route[0].weight: weight -5 < 0"),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[2],
        format!("{f} doc 2: Deployment web: SKIPPED (apps/v1 Deployment is not a mesh kind)")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
