//! The backup archive, pure: one tar holding `manifest.json` first, then the etcd
//! snapshot, the cluster PKI and the kubeadm ClusterConfiguration. The manifest names
//! every other member with its sha256, so a reader refuses an archive with a changed,
//! missing or extra member before anything is done with it.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::facts::sha256_hex;

pub const MANIFEST: &str = "manifest.json";
pub const SNAPSHOT: &str = "etcd/snapshot.db";
pub const CLUSTER_CONFIGURATION: &str = "kubeadm/cluster-configuration.yaml";
/// Members under this folder are `/etc/kubernetes/pki/<rest>` of the snapshot's host.
pub const PKI_PREFIX: &str = "pki/";
/// The archive format this kubeha writes and reads.
const FORMAT: u32 = 1;
/// No member of a real archive comes near this; a hostile tar could claim anything.
const MAX_MEMBER_BYTES: u64 = 8 << 30;

/// The PKI files every control plane shares (the rest are per host, signed by these).
pub const SHARED_PKI: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
    "sa.pub",
];

/// What `etcdctl snapshot status -w json` says about the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

impl SnapshotStatus {
    /// Parses `etcdctl snapshot status -w json`.
    pub fn parse(json: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(json.trim()).map_err(|e| format!("not JSON: {e}"))?;
        let field = |name: &str| {
            v[name]
                .as_u64()
                .ok_or_else(|| format!("no `{name}` in the snapshot status"))
        };
        Ok(Self {
            hash: field("hash")?,
            revision: v["revision"]
                .as_i64()
                .ok_or("no `revision` in the snapshot status")?,
            total_keys: field("totalKey")?,
            total_size: field("totalSize")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    #[serde(flatten)]
    pub about: About,
    /// Every other member's sha256, by name.
    pub members: BTreeMap<String, String>,
}

/// What goes into an archive besides the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// What the archive is a backup of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct About {
    pub cluster: String,
    pub kubernetes_version: String,
    pub etcd_version: String,
    /// The control plane the snapshot was taken on; its own certificates are in `pki/`.
    pub source_host: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub snapshot: SnapshotStatus,
}

impl Archive {
    /// An archive of `files`, its manifest hashing each; refuses a set without the
    /// snapshot, the ClusterConfiguration or a shared PKI file, or with an unsafe name.
    pub fn new(about: About, files: BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let manifest = Manifest {
            format: FORMAT,
            about,
            members: files
                .iter()
                .map(|(n, b)| (n.clone(), sha256_hex(b)))
                .collect(),
        };
        check_members(&manifest)?;
        Ok(Self { manifest, files })
    }

    /// The tar bytes: the manifest first, then the members in name order.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let manifest = serde_json::to_vec_pretty(&self.manifest).expect("manifest serializes");
        let members = std::iter::once((MANIFEST, manifest.as_slice()))
            .chain(self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
        for (name, bytes) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o600);
            header.set_mtime(self.manifest.about.created);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, bytes)
                .expect("appending to a Vec cannot fail");
        }
        builder.into_inner().expect("finishing a Vec cannot fail")
    }

    /// Reads and verifies an archive: the manifest first, every member listed with its
    /// hash, nothing else. Says what is wrong, never what a member holds.
    pub fn from_tar(bytes: &[u8]) -> Result<Self, String> {
        let mut tar = tar::Archive::new(bytes);
        let mut manifest: Option<Manifest> = None;
        let mut files = BTreeMap::new();
        for entry in tar
            .entries()
            .map_err(|e| format!("not a tar archive: {e}"))?
        {
            let mut entry = entry.map_err(|e| format!("damaged tar archive: {e}"))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err("the archive holds something other than plain files".into());
            }
            let name = entry
                .path()
                .map_err(|e| format!("a member has an unreadable name: {e}"))?
                .to_str()
                .ok_or("a member's name is not UTF-8")?
                .to_string();
            if entry.size() > MAX_MEMBER_BYTES {
                return Err(format!("member {name} is implausibly large"));
            }
            let mut content = Vec::new();
            entry
                .read_to_end(&mut content)
                .map_err(|e| format!("cannot read member {name}: {e}"))?;
            match &manifest {
                None if name == MANIFEST => {
                    manifest = Some(
                        serde_json::from_slice(&content)
                            .map_err(|e| format!("the manifest is not valid: {e}"))?,
                    );
                }
                None => return Err(format!("{MANIFEST} is not the first member")),
                Some(_) if files.contains_key(&name) || name == MANIFEST => {
                    return Err(format!("member {name} appears twice"));
                }
                Some(_) => {
                    files.insert(name, content);
                }
            }
        }
        let manifest = manifest.ok_or("the archive is empty")?;
        if manifest.format != FORMAT {
            return Err(format!(
                "archive format {} is not the {FORMAT} this kubeha reads",
                manifest.format
            ));
        }
        check_members(&manifest)?;
        for (name, want) in &manifest.members {
            let bytes = files
                .get(name)
                .ok_or_else(|| format!("member {name} is missing"))?;
            if sha256_hex(bytes) != *want {
                return Err(format!(
                    "member {name} does not match its sha256 in the manifest: the archive is corrupted"
                ));
            }
        }
        if let Some(extra) = files.keys().find(|n| !manifest.members.contains_key(*n)) {
            return Err(format!("member {extra} is not in the manifest"));
        }
        Ok(Self { manifest, files })
    }

    /// Refuses an archive of another cluster.
    pub fn check_cluster(&self, cluster: &str) -> Result<(), String> {
        if self.manifest.about.cluster == cluster {
            Ok(())
        } else {
            Err(format!(
                "the archive is a backup of cluster `{}`, not `{cluster}`",
                self.manifest.about.cluster
            ))
        }
    }

    /// The archived `/etc/kubernetes/pki` files, by path below that folder.
    pub fn pki(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .filter_map(|(n, b)| n.strip_prefix(PKI_PREFIX).map(|rest| (rest, b.as_slice())))
    }
}

/// The member set an archive must have, with names that stay inside a folder.
fn check_members(manifest: &Manifest) -> Result<(), String> {
    for name in manifest.members.keys() {
        if !safe_member_name(name) {
            return Err(format!("member name {name:?} is not a plain relative path"));
        }
    }
    let required = [SNAPSHOT.to_string(), CLUSTER_CONFIGURATION.to_string()]
        .into_iter()
        .chain(SHARED_PKI.iter().map(|f| format!("{PKI_PREFIX}{f}")));
    for name in required {
        if !manifest.members.contains_key(&name) {
            return Err(format!("the archive has no {name}"));
        }
    }
    Ok(())
}

/// Relative, `/`-separated, no `.`/`..`/empty parts, printable ASCII only: the name
/// becomes a path on a control plane.
pub fn safe_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Archive {
        let mut files = BTreeMap::new();
        files.insert(SNAPSHOT.to_string(), b"etcd snapshot bytes".to_vec());
        files.insert(
            CLUSTER_CONFIGURATION.to_string(),
            b"kind: ClusterConfiguration\n".to_vec(),
        );
        for f in SHARED_PKI
            .iter()
            .chain(&["apiserver.crt", "etcd/server.key"])
        {
            files.insert(
                format!("{PKI_PREFIX}{f}"),
                format!("pem of {f}").into_bytes(),
            );
        }
        Archive::new(
            About {
                cluster: "prod".into(),
                kubernetes_version: "v1.31.0".into(),
                etcd_version: "3.4.23".into(),
                source_host: "cp-2".into(),
                created: 1_700_000_000,
                snapshot: SnapshotStatus {
                    hash: 42,
                    revision: 1234,
                    total_keys: 600,
                    total_size: 19,
                },
            },
            files,
        )
        .unwrap()
    }

    #[test]
    fn an_archive_reads_back_as_written() {
        let archive = sample();
        let tar = archive.to_tar();
        assert_eq!(Archive::from_tar(&tar).unwrap(), archive);
        assert_eq!(
            archive.manifest.members[SNAPSHOT],
            sha256_hex(b"etcd snapshot bytes")
        );
        let pki: Vec<&str> = archive.pki().map(|(n, _)| n).collect();
        assert!(pki.contains(&"etcd/ca.key") && pki.contains(&"apiserver.crt"));
        assert_eq!(pki.len(), SHARED_PKI.len() + 2);
    }

    #[test]
    fn snapshot_status_parses_etcdctl_json() {
        let s = SnapshotStatus::parse(
            r#"{"hash":3307489587,"revision":1869,"totalKey":1305,"totalSize":3977216}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            SnapshotStatus {
                hash: 3307489587,
                revision: 1869,
                total_keys: 1305,
                total_size: 3977216
            }
        );
        assert!(SnapshotStatus::parse(r#"{"hash":1}"#).is_err());
        assert!(SnapshotStatus::parse("Error: no such file").is_err());
    }

    #[test]
    fn every_flipped_byte_of_a_member_is_refused() {
        let archive = sample();
        let tar = archive.to_tar();
        let needle = b"etcd snapshot bytes";
        let at = tar.windows(needle.len()).position(|w| w == needle).unwrap();
        for i in at..at + needle.len() {
            let mut bad = tar.clone();
            bad[i] ^= 0x01;
            let err = Archive::from_tar(&bad).unwrap_err();
            assert!(err.contains("corrupted"), "{err}");
        }
    }

    #[test]
    fn a_damaged_tar_is_refused() {
        let tar = sample().to_tar();
        assert!(Archive::from_tar(&tar[..700]).is_err());
        assert!(Archive::from_tar(b"not a tar at all, just text").is_err());
        assert!(Archive::from_tar(&[]).is_err());
    }

    /// Builds a tar from raw members, bypassing `Archive::new`'s checks.
    fn raw_tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            b.append_data(&mut h, name, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn missing_extra_and_unlisted_members_are_refused() {
        let archive = sample();
        let manifest = serde_json::to_vec(&archive.manifest).unwrap();
        let mut members: Vec<(&str, &[u8])> = vec![(MANIFEST, &manifest)];
        members.extend(
            archive
                .files
                .iter()
                .map(|(n, b)| (n.as_str(), b.as_slice())),
        );
        assert!(Archive::from_tar(&raw_tar(&members)).is_ok());

        let mut extra = members.clone();
        extra.push(("pki/planted.key", b"x"));
        assert!(Archive::from_tar(&raw_tar(&extra))
            .unwrap_err()
            .contains("not in the manifest"));

        let missing: Vec<_> = members
            .iter()
            .filter(|(n, _)| *n != "pki/apiserver.crt")
            .cloned()
            .collect();
        assert!(Archive::from_tar(&raw_tar(&missing))
            .unwrap_err()
            .contains("missing"));

        let mut late = members.clone();
        late.swap(0, 1);
        assert!(Archive::from_tar(&raw_tar(&late))
            .unwrap_err()
            .contains("first member"));

        let mut twice = members.clone();
        twice.push(members[1]);
        assert!(Archive::from_tar(&raw_tar(&twice))
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn a_manifest_naming_a_path_outside_is_refused() {
        let mut archive = sample();
        archive
            .manifest
            .members
            .insert("pki/../../etc/shadow".into(), sha256_hex(b"x"));
        let manifest = serde_json::to_vec(&archive.manifest).unwrap();
        // tar itself will not write such a member; the manifest alone must be refused.
        let tar = raw_tar(&[(MANIFEST, &manifest)]);
        assert!(Archive::from_tar(&tar)
            .unwrap_err()
            .contains("not a plain relative path"));
        for bad in ["", "/etc/x", "a//b", "a/./b", "a/../b", "a b", "a\nb", "é"] {
            assert!(!safe_member_name(bad), "{bad:?}");
        }
        assert!(safe_member_name("pki/etcd/ca.key"));
    }

    #[test]
    fn an_archive_without_a_shared_ca_cannot_be_made() {
        let archive = sample();
        let mut files = archive.files.clone();
        files.remove("pki/etcd/ca.key");
        let about = About {
            cluster: "prod".into(),
            kubernetes_version: String::new(),
            etcd_version: String::new(),
            source_host: "cp-1".into(),
            created: 0,
            snapshot: archive.manifest.about.snapshot.clone(),
        };
        assert!(Archive::new(about, files)
            .unwrap_err()
            .contains("pki/etcd/ca.key"));
    }

    #[test]
    fn a_foreign_archive_is_refused_by_name() {
        let archive = sample();
        assert!(archive.check_cluster("prod").is_ok());
        let err = archive.check_cluster("staging").unwrap_err();
        assert!(err.contains("`prod`") && err.contains("`staging`"), "{err}");
    }
}
