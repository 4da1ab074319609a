//! Secrets the service generates for itself when none is configured: kept
//! in the data dir, readable by the owner only, written atomically.

use std::path::Path;

use secrecy::SecretString;

/// The JWT secret from the settings, or one generated once and kept in the
/// data dir (mode 0600) so tokens survive restarts.
pub fn load_or_create_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> anyhow::Result<SecretString> {
    load_or_create_secret_file(configured, data_dir, "jwt-secret")
}

/// A configured secret, or one generated once into `data_dir/file_name`.
pub fn load_or_create_secret_file(
    configured: Option<&SecretString>,
    data_dir: &Path,
    file_name: &str,
) -> anyhow::Result<SecretString> {
    use anyhow::Context;
    if let Some(secret) = configured {
        return Ok(secret.clone());
    }
    let path = data_dir.join(file_name);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => anyhow::bail!("{} is too short; delete it to regenerate", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("while reading {}", path.display())),
    }
    private_dir(data_dir)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = hex::encode(raw);
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a secret");
    Ok(SecretString::from(secret))
}

/// Makes the data dir, readable by its owner only (it holds the secrets,
/// the SQLite database and the filesystem store's blobs). One that exists
/// already is left as the operator made it, with a warning when others
/// may read it.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let existed = dir.exists();
    builder
        .create(dir)
        .with_context(|| format!("while creating data dir {}", dir.display()))?;
    #[cfg(unix)]
    if existed {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %dir.display(),
                "the data dir may be read by other users; it holds secrets and data: chmod 700 it"
            );
        }
    }
    Ok(())
}

/// Creates an empty file only its owner can read, unless it exists (the
/// SQLite database: SQLite gives its journal files the same mode).
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("while creating {}", path.display())),
    }
}

/// Writes a file only its owner can read, atomically: a concurrent reader
/// sees the whole secret or none.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("while creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    // Another process may have won the race to create it; keep theirs.
    if path.exists() {
        std::fs::remove_file(&tmp)?;
        return Ok(());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("while writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_secret_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_secret(None, dir.path()).expect("creates");
        let second = load_or_create_secret(None, dir.path()).expect("reads");
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 64);
    }
}
