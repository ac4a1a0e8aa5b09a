//! Optional encryption of a backup archive to age X25519 recipients or with a
//! passphrase (age's scrypt recipient), with the `age` crate: the result is an ordinary
//! age file (`age -d -i key.txt`, or `age -d` asking for the passphrase, opens it too).
//! Pure.

use std::io::{Read, Write};
use std::str::FromStr;

pub use age::secrecy::SecretString;
pub use age::x25519::Recipient;

/// How a backup is sealed. age allows a passphrase only as a file's one recipient.
pub enum Sealing {
    Recipients(Vec<Recipient>),
    Passphrase(SecretString),
}

/// What opens a sealed backup.
pub enum Key<'a> {
    /// An age identity file's bytes (`AGE-SECRET-KEY-1…` lines).
    IdentityFile(&'a [u8]),
    Passphrase(&'a SecretString),
}

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

/// The archive's bytes, readable only with an identity matching one of the recipients,
/// or with the passphrase (scrypt, age's default work factor: about a second here).
pub fn encrypt(plain: &[u8], sealing: &Sealing) -> Result<Vec<u8>, String> {
    let encryptor = match sealing {
        Sealing::Recipients(recipients) => {
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| format!("cannot encrypt the backup: {e}"))?
        }
        Sealing::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
    };
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
    /// The archive is (or the key does not open it).
    Archive(String),
}

/// Opens an encrypted archive with an age identity file (`AGE-SECRET-KEY-1…` lines, `#`
/// comments) or a passphrase; neither is ever put in an error.
pub fn decrypt(encrypted: &[u8], key: Key) -> Result<Vec<u8>, Unopened> {
    let archive = |why: String| Unopened::Archive(why);
    let decryptor = age::Decryptor::new(encrypted)
        .map_err(|e| archive(format!("is not a readable age file: {e}")))?;
    let mut reader = match (key, decryptor.is_scrypt()) {
        (Key::IdentityFile(file), false) => {
            let identities = age::IdentityFile::from_buffer(file)
                .and_then(|f| f.into_identities().map_err(std::io::Error::other))
                .map_err(|_| {
                    Unopened::Identity("is not an age identity file (AGE-SECRET-KEY-1… lines)")
                })?;
            if identities.is_empty() {
                return Err(Unopened::Identity("holds no age identity"));
            }
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref()))
                .map_err(|e| archive(format!("cannot be opened with this identity: {e}")))?
        }
        (Key::Passphrase(p), true) => {
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(|e| archive(format!("cannot be opened with this passphrase: {e}")))?
        }
        (Key::IdentityFile(_), true) => return Err(archive(
            "is encrypted with a passphrase: pass --passphrase-file FILE or --passphrase-env VAR"
                .into(),
        )),
        (Key::Passphrase(_), false) => {
            return Err(archive(
                "is encrypted to an age recipient: pass --identity FILE with its identity".into(),
            ))
        }
    };
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
        let sealed = encrypt(&plain, &Sealing::Recipients(vec![me, them])).unwrap();
        assert!(is_encrypted(&sealed) && !is_encrypted(&plain));
        assert!(!sealed.windows(9).any(|w| w == b"tar bytes"));
        assert_eq!(
            decrypt(&sealed, Key::IdentityFile(mine.as_bytes())).unwrap(),
            plain
        );
        assert_eq!(
            decrypt(&sealed, Key::IdentityFile(theirs.as_bytes())).unwrap(),
            plain
        );
        let Unopened::Archive(refused) =
            decrypt(&sealed, Key::IdentityFile(stranger.as_bytes())).unwrap_err()
        else {
            panic!("the stranger's identity file is a good one")
        };
        assert!(refused.contains("cannot be opened"), "{refused}");
        assert!(!refused.contains("AGE-SECRET-KEY"), "{refused}");
        let mut damaged = sealed.clone();
        let n = damaged.len();
        damaged[n - 20] ^= 1;
        assert!(matches!(
            decrypt(&damaged, Key::IdentityFile(mine.as_bytes())),
            Err(Unopened::Archive(_))
        ));
        for bad in [&b"not a key\n"[..], b"# only a comment\n"] {
            assert!(matches!(
                decrypt(&sealed, Key::IdentityFile(bad)),
                Err(Unopened::Identity(_))
            ));
        }
    }

    #[test]
    fn only_the_passphrase_opens_a_passphrase_archive() {
        let plain = b"tar bytes".repeat(1000);
        let right = SecretString::from("correct horse battery staple".to_string());
        let wrong = SecretString::from("correct horse battery stapler".to_string());
        let sealed = encrypt(&plain, &Sealing::Passphrase(right.clone())).unwrap();
        assert!(is_encrypted(&sealed));
        assert!(!sealed.windows(9).any(|w| w == b"tar bytes"));
        assert!(
            !sealed.windows(7).any(|w| w == b"correct"),
            "no passphrase in the file"
        );
        assert_eq!(decrypt(&sealed, Key::Passphrase(&right)).unwrap(), plain);
        let Unopened::Archive(refused) = decrypt(&sealed, Key::Passphrase(&wrong)).unwrap_err()
        else {
            panic!("a wrong passphrase is the archive's refusal")
        };
        assert!(
            refused.contains("cannot be opened with this passphrase"),
            "{refused}"
        );
        assert!(!refused.contains("correct"), "{refused}");
        // The other kind of key for each kind of archive: told which one it needs.
        let (mine, me) = key();
        let to_me = encrypt(&plain, &Sealing::Recipients(vec![me])).unwrap();
        let needs = |r: Result<Vec<u8>, Unopened>| match r {
            Err(Unopened::Archive(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(needs(decrypt(&to_me, Key::Passphrase(&right))).contains("pass --identity"));
        assert!(needs(decrypt(&sealed, Key::IdentityFile(mine.as_bytes())))
            .contains("--passphrase-file"));
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
