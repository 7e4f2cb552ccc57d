//! Signing keys and signatures in minisign's format (ed25519), through the `minisign` crate:
//! `key generate`, signing packs and indexes, and verifying them against a public key.

use crate::diagnostic::Diagnostic;
use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox, SignatureBox};
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// The extension of a detached signature, as minisign writes it.
pub(crate) const SIG_EXT: &str = "minisig";
/// A signature file is a few hundred bytes; more is not a signature.
pub(crate) const MAX_SIG: u64 = 4096;

/// What `key generate` wrote.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Generated {
    pub(crate) secret: PathBuf,
    pub(crate) public: PathBuf,
    /// The base64 line for `public_key` in the settings.
    pub(crate) public_key: String,
    pub(crate) key_id: String,
}

/// A key's id as minisign shows it: 16 hex digits.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    let len = keynum.len().min(8);
    n[..len].copy_from_slice(&keynum[..len]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// `NAME.sig` for `NAME`: where a file's detached signature sits.
pub(crate) fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(".");
    s.push(SIG_EXT);
    PathBuf::from(s)
}

/// Writes `NAME.key` (secret, 0600) and `NAME.pub` into `dir`, refusing to replace either.
pub(crate) fn generate(dir: &Path, name: &str) -> Result<Generated, Diagnostic> {
    let plain = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        return Err(Diagnostic::error(format!(
            "`{}` is not a key name: use at most 64 ASCII letters, digits, `_`, `-` and `.`, not starting with `.` or `-`",
            name.escape_debug()
        ))
        .with_hint("the key is written as NAME.key and NAME.pub in the current directory"));
    }
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for p in [&secret, &public] {
        if p.symlink_metadata().is_ok() {
            return Err(
                Diagnostic::error(format!("`{}` already exists", p.display())).with_hint(
                    "convirt never replaces a key: choose another NAME, or move the old key away first",
                ),
            );
        }
    }
    let fail = |e: minisign::PError| Diagnostic::error(format!("cannot generate a key: {e}"));
    let kp = KeyPair::generate_unencrypted_keypair().map_err(fail)?;
    let id = key_id(kp.pk.keynum());
    let sk_text = kp
        .sk
        .to_box(Some(&format!(
            "convirt secret key {id} (unencrypted; keep it private)"
        )))
        .map_err(fail)?
        .to_string();
    let pk_text = kp.pk.to_box().map_err(fail)?.to_string();
    let write_fail = |p: &Path, e: std::io::Error| {
        Diagnostic::error(format!("cannot write `{}`: {e}", p.display()))
    };
    crate::atomic::write(&secret, sk_text.as_bytes(), 0o600, false)
        .map_err(|e| write_fail(&secret, e))?;
    if let Err(e) = crate::atomic::write(&public, pk_text.as_bytes(), 0o644, false) {
        let _ = std::fs::remove_file(&secret);
        return Err(write_fail(&public, e));
    }
    Ok(Generated {
        secret,
        public,
        public_key: kp.pk.to_base64(),
        key_id: id,
    })
}

/// A secret key read from a `.key` file, with its public half.
pub(crate) struct Signer {
    sk: SecretKey,
    pk: PublicKey,
    pub(crate) key_id: String,
}

impl Signer {
    pub(crate) fn load(path: &Path) -> Result<Signer, Diagnostic> {
        let shown = path.display();
        // As ssh with a private key: one that others can read is no longer secret.
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Diagnostic::error(format!(
                    "the secret key `{shown}` is open to other users (mode {mode:04o})"
                ))
                .with_hint(format!("`chmod 600 {shown}`, and consider it exposed")));
            }
        }
        let text = read_small(path, 4096)?;
        let sk_box = SecretKeyBox::from_string(&text).map_err(|e| {
            Diagnostic::error(format!("`{shown}` is not a minisign secret key: {e}"))
        })?;
        let sk = SecretKey::from_unencrypted_box(sk_box).map_err(|e| {
            Diagnostic::error(format!("cannot use the secret key `{shown}`: {e}")).with_hint(
                "convirt signs with unencrypted keys (`convirt key generate`, or `minisign -G -W`)",
            )
        })?;
        let pk = PublicKey::from_secret_key(&sk)
            .map_err(|e| Diagnostic::error(format!("cannot use the secret key `{shown}`: {e}")))?;
        Ok(Signer {
            key_id: key_id(pk.keynum()),
            sk,
            pk,
        })
    }

    /// The detached signature of `data`, its trusted comment `comment`.
    pub(crate) fn sign(&self, data: &[u8], comment: &str) -> Result<String, Diagnostic> {
        minisign::sign(
            Some(&self.pk),
            &self.sk,
            Cursor::new(data),
            Some(comment),
            None,
        )
        .map(|b| b.to_string())
        .map_err(|e| Diagnostic::error(format!("cannot sign: {e}")))
    }

    /// Checks a signature made with this key.
    pub(crate) fn verify_own(&self, sig: &str, data: &[u8]) -> Result<(), String> {
        verify(&self.pk, sig, Cursor::new(data))
    }

    /// Signs a file as it is on disk.
    pub(crate) fn sign_file(&self, path: &Path, comment: &str) -> Result<String, Diagnostic> {
        let f = File::open(path)
            .map_err(|e| Diagnostic::error(format!("cannot read `{}`: {e}", path.display())))?;
        minisign::sign(Some(&self.pk), &self.sk, f, Some(comment), None)
            .map(|b| b.to_string())
            .map_err(|e| Diagnostic::error(format!("cannot sign `{}`: {e}", path.display())))
    }
}

/// A public key as pasted into the settings: the base64 line of a `.pub` file, or the whole
/// file's text.
pub(crate) fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    PublicKey::from_base64(line).map_err(|_| {
        "not a minisign public key (expected the last line of a `.pub` file, 56 characters starting with `RW`)".to_string()
    })
}

/// The key id of a public key.
pub(crate) fn public_key_id(pk: &PublicKey) -> String {
    key_id(pk.keynum())
}

/// Checks that `sig` (the text of a `.minisig`) is a good signature of `data` by `pk`;
/// the error says why not.
pub(crate) fn verify<R: Read + std::io::Seek>(
    pk: &PublicKey,
    sig: &str,
    data: R,
) -> Result<(), String> {
    let b =
        SignatureBox::from_string(sig).map_err(|e| format!("the signature is malformed: {e}"))?;
    // minisign 0.10 reads the global signature's 64 bytes without checking its length (a
    // short one panics): it must be 64 bytes, 88 characters of padded base64.
    let global = sig.lines().nth(3).map(str::trim).unwrap_or("");
    if global.len() != 88 || !global.ends_with("==") || global.ends_with("===") {
        return Err("the signature is malformed: its last line is not a 64-byte signature".into());
    }
    if b.keynum() != pk.keynum() {
        return Err(format!(
            "it is signed by key {}, not by the trusted key {}",
            key_id(b.keynum()),
            key_id(pk.keynum())
        ));
    }
    minisign::verify(pk, &b, data, true, false, false)
        .map_err(|e| format!("the signature does not match: {e}"))
}

/// Reads a file that must be small (a key, a signature).
pub(crate) fn read_small(path: &Path, max: u64) -> Result<String, Diagnostic> {
    let shown = path.display();
    let f =
        File::open(path).map_err(|e| Diagnostic::error(format!("cannot read `{shown}`: {e}")))?;
    let mut text = String::new();
    f.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| Diagnostic::error(format!("cannot read `{shown}`: {e}")))?;
    if text.len() as u64 > max {
        return Err(Diagnostic::error(format!(
            "`{shown}` is larger than {max} bytes: not a key or signature"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(dir: &Path, name: &str) -> (Signer, PublicKey) {
        let g = generate(dir, name).unwrap();
        let pk = parse_public_key(&std::fs::read_to_string(&g.public).unwrap()).unwrap();
        (Signer::load(&g.secret).unwrap(), pk)
    }

    #[test]
    fn sign_verify_and_what_fails() {
        let d = tempfile::tempdir().unwrap();
        let (a, pa) = signer(d.path(), "a");
        let (b, _) = signer(d.path(), "b");
        let sig = a.sign(b"data", "convirt test").unwrap();
        assert!(verify(&pa, &sig, Cursor::new(b"data")).is_ok());
        let e = verify(&pa, &sig, Cursor::new(b"datA")).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let other = b.sign(b"data", "convirt test").unwrap();
        let e = verify(&pa, &other, Cursor::new(b"data")).unwrap_err();
        assert!(e.contains("not by the trusted key"), "{e}");
        // A changed trusted comment breaks the global signature.
        let forged = sig.replace("convirt test", "convirt tess");
        assert!(verify(&pa, &forged, Cursor::new(b"data")).is_err());
        // Damage anywhere is an error, never a panic.
        for i in 0..sig.len() {
            let mut bytes = sig.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            if let Ok(s) = String::from_utf8(bytes) {
                if s != sig {
                    let _ = verify(&pa, &s, Cursor::new(b"data"));
                }
            }
            let _ = verify(&pa, &sig[..i], Cursor::new(b"data"));
        }
    }

    #[test]
    fn public_keys_and_names() {
        let d = tempfile::tempdir().unwrap();
        let g = generate(d.path(), "k.1").unwrap();
        let text = std::fs::read_to_string(&g.public).unwrap();
        // The whole file or its last line.
        assert!(parse_public_key(&text).is_ok());
        assert!(parse_public_key(&g.public_key).is_ok());
        for bad in ["", "RW", "not a key", &g.public_key[1..]] {
            assert!(parse_public_key(bad).is_err(), "{bad}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "../k", "a b"] {
            assert!(generate(d.path(), bad).is_err(), "{bad}");
        }
    }
}
