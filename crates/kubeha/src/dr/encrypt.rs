//! Optional encryption of a backup archive to age X25519 recipients, with the `age`
//! crate: the result is an ordinary age file (`age -d -i key.txt` opens it too). Pure.

use std::io::{Read, Write};
use std::str::FromStr;

pub use age::x25519::Recipient;

/// How every age file begins.
const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// An `age1…` public key, as `age-keygen` prints it.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    Recipient::from_str(text.trim()).map_err(|e| {
        format!(
            "{:?} is not an age X25519 recipient (age1…): {e}",
            text.trim()
        )
    })
}

pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The archive's bytes, readable only with an identity matching one of `recipients`.
pub fn encrypt(plain: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, String> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("cannot encrypt the backup: {e}"))?;
    let mut out = Vec::with_capacity(plain.len() + 512);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| format!("cannot encrypt the backup: {e}"))?;
    writer
        .write_all(plain)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| format!("cannot encrypt the backup: {e}"))?;
    Ok(out)
}

/// Why an encrypted archive was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Unopened {
    /// The identity file is at fault.
    Identity(&'static str),
    /// The archive is.
    Archive(String),
}

/// Opens an encrypted archive with the identities of an age identity file
/// (`AGE-SECRET-KEY-1…` lines, `#` comments); the identity text is never put in an error.
pub fn decrypt(encrypted: &[u8], identity_file: &[u8]) -> Result<Vec<u8>, Unopened> {
    let identities = age::IdentityFile::from_buffer(identity_file)
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .map_err(|_| Unopened::Identity("is not an age identity file (AGE-SECRET-KEY-1… lines)"))?;
    if identities.is_empty() {
        return Err(Unopened::Identity("holds no age identity"));
    }
    let archive = |why: String| Unopened::Archive(why);
    let decryptor = age::Decryptor::new(encrypted)
        .map_err(|e| archive(format!("is not a readable age file: {e}")))?;
    if decryptor.is_scrypt() {
        return Err(archive(
            "is encrypted with a passphrase; kubeha opens archives encrypted to a recipient".into(),
        ));
    }
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref()))
        .map_err(|e| archive(format!("cannot be opened with this identity: {e}")))?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| archive(format!("is damaged: {e}")))?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn key() -> (String, Recipient) {
        let id = age::x25519::Identity::generate();
        let file = format!("# created: now\n{}\n", id.to_string().expose_secret());
        (file, id.to_public())
    }

    #[test]
    fn only_a_recipients_identity_opens_the_archive() {
        let (mine, me) = key();
        let (theirs, them) = key();
        let (stranger, _) = key();
        let plain = b"tar bytes".repeat(1000);
        let sealed = encrypt(&plain, &[me, them]).unwrap();
        assert!(is_encrypted(&sealed) && !is_encrypted(&plain));
        assert!(!sealed.windows(9).any(|w| w == b"tar bytes"));
        assert_eq!(decrypt(&sealed, mine.as_bytes()).unwrap(), plain);
        assert_eq!(decrypt(&sealed, theirs.as_bytes()).unwrap(), plain);
        let Unopened::Archive(refused) = decrypt(&sealed, stranger.as_bytes()).unwrap_err() else {
            panic!("the stranger's identity file is a good one")
        };
        assert!(refused.contains("cannot be opened"), "{refused}");
        assert!(!refused.contains("AGE-SECRET-KEY"), "{refused}");
        let mut damaged = sealed.clone();
        let n = damaged.len();
        damaged[n - 20] ^= 1;
        assert!(matches!(
            decrypt(&damaged, mine.as_bytes()),
            Err(Unopened::Archive(_))
        ));
        for bad in [&b"not a key\n"[..], b"# only a comment\n"] {
            assert!(matches!(decrypt(&sealed, bad), Err(Unopened::Identity(_))));
        }
    }

    #[test]
    fn recipients_are_age_x25519_public_keys() {
        let (_, me) = key();
        assert_eq!(
            parse_recipient(&format!(" {me}\n")).unwrap().to_string(),
            me.to_string()
        );
        for bad in ["", "age1", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1QQQ"] {
            assert!(parse_recipient(bad).is_err(), "{bad:?}");
        }
    }
}
