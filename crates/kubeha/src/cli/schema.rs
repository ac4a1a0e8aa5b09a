//! `kubeha schema`: a JSON Schema of `cluster.yaml`, generated from the document model
//! the loader parses, so editors with the YAML language server complete and check specs
//! as they are typed. It covers shape (fields, types, enum values, required keys, port
//! ranges); `kubeha check` remains the full validation (addresses, subnets, versions).

use super::{write_stdout, Failure, Ui};
use crate::spec::raw::Document;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The schema, as `kubeha schema` prints it.
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Document>();
    schema.insert("title".into(), "kubeha cluster spec (cluster.yaml)".into());
    schema.to_value()
}

pub fn run(_ui: &Ui, _args: Args) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(&schema()).expect("a schema serializes");
    write_stdout(format!("{text}\n").as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::schema;
    use crate::spec::starter::STARTER_SPEC;

    fn errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
        let doc: serde_json::Value = serde_saphyr::from_str(yaml).expect("the YAML parses");
        validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_schema_accepts_valid_specs() {
        let validator = jsonschema::validator_for(&schema()).expect("a valid JSON Schema");
        assert_eq!(errors(&validator, STARTER_SPEC), Vec::<String>::new());
        // The starter's commented options, switched on.
        let everything = STARTER_SPEC
            .replace("    # identityFile:", "    identityFile:")
            .replace("    # useAgent:", "    useAgent:")
            .replace("    # sudo:", "    sudo:")
            .replace("    # hostKeyPolicy:", "    hostKeyPolicy:")
            .replace("    # knownHostsFile:", "    knownHostsFile:")
            .replace("    # bastion:", "    bastion:")
            .replace("      # internalAddress:", "      internalAddress:")
            .replace("      # labels:", "      labels:")
            .replace("      # taints:", "      taints:")
            .replace("    # extraSANs:", "    extraSANs:");
        assert_ne!(everything, STARTER_SPEC);
        assert_eq!(errors(&validator, &everything), Vec::<String>::new());
        // A corpus of valid specs, when the repository has one.
        let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid");
        for file in std::fs::read_dir(valid).into_iter().flatten() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let yaml = std::fs::read_to_string(&path).unwrap();
                assert_eq!(
                    errors(&validator, &yaml),
                    Vec::<String>::new(),
                    "{}",
                    path.display()
                );
            }
        }
    }

    /// The corpus files whose mistake is one of shape, which the schema catches as an
    /// editor would flag them; the others (addresses, subnets, versions) are `check`'s.
    /// A mistake inside an optional section is reported at the section (its schema is
    /// "the section or null").
    #[test]
    fn the_schema_rejects_mistakes_of_shape_in_the_invalid_corpus() {
        let validator = jsonschema::validator_for(&schema()).expect("a valid JSON Schema");
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
        let mut missed = Vec::new();
        for (file, pointer) in [
            ("01-unknown-top-level-field.yaml", ""),
            ("02-unknown-host-field.yaml", "/spec/hosts/2"),
            ("03-unknown-role.yaml", "/spec/hosts/4/roles/0"),
            ("08-missing-roles.yaml", "/spec/hosts/4"),
            ("10-endpoint-port-too-high.yaml", "/spec/apiEndpoint"),
            ("11-endpoint-port-zero.yaml", "/spec/apiEndpoint"),
            ("23-wrong-api-version.yaml", "/apiVersion"),
            ("24-wrong-kind.yaml", "/kind"),
            ("25-missing-cluster-name.yaml", "/metadata/name"),
            ("28-missing-address.yaml", "/spec/hosts/4"),
            ("29-ssh-port-out-of-range.yaml", "/spec/ssh"),
            ("31-unknown-host-key-policy.yaml", "/spec/ssh"),
            ("32-unknown-containerd-source.yaml", "/spec/packages"),
            (
                "38-unknown-taint-effect.yaml",
                "/spec/hosts/4/taints/0/effect",
            ),
            ("44-port-wrong-type.yaml", "/spec/apiEndpoint"),
        ] {
            let yaml = std::fs::read_to_string(corpus.join(file)).unwrap();
            let found = errors(&validator, &yaml);
            if !found.iter().any(|e| e.starts_with(&format!("{pointer}: "))) {
                missed.push(format!("{file}: no error at `{pointer}` among {found:?}"));
            }
        }
        assert!(missed.is_empty(), "{missed:#?}");
    }
}
