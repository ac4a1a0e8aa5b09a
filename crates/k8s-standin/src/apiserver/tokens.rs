//! Bound ServiceAccount tokens: JWTs (ES256, the stand-in's sa.key is P-256)
//! issued by TokenRequest and checked by the authenticator against sa.pub,
//! the issuer, the audiences and the expiry, as the real apiserver does.
//! Signing and verification are ring's; this module only frames the JWS.

use super::auth::User;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64URL, Engine};
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{json, Value};

/// The apiserver's service-account settings and keys.
pub struct SaKeys {
    pub issuer: String,
    pub audiences: Vec<String>,
    signing: Option<EcdsaKeyPair>,
    /// Uncompressed P-256 points from --service-account-key-file.
    verifying: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongIssuer,
    WrongAudience,
}

fn kid(point: &[u8]) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, point))
}

impl SaKeys {
    /// From sa.key (PKCS#8 PEM, optional: only signing needs it) and sa.pub (SPKI PEM).
    pub fn load(
        issuer: &str,
        audiences: &[String],
        signing_pem: Option<&str>,
        public_pem: &str,
    ) -> Result<SaKeys, String> {
        let signing = match signing_pem {
            Some(p) => {
                let der = crate::pki::pem_to_der(p).map_err(|e| e.to_string())?;
                Some(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &der,
                        &ring::rand::SystemRandom::new(),
                    )
                    .map_err(|e| format!("service-account-signing-key-file: {e}"))?,
                )
            }
            None => None,
        };
        let der = crate::pki::pem_to_der(public_pem).map_err(|e| e.to_string())?;
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
            .map_err(|e| format!("service-account-key-file: {e}"))?;
        let audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences.to_vec()
        };
        Ok(SaKeys {
            issuer: issuer.to_string(),
            audiences,
            signing,
            verifying: vec![spki.subject_public_key.data.to_vec()],
        })
    }

    /// A signed JWT for `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let key = self
            .signing
            .as_ref()
            .ok_or("no service-account-signing-key-file")?;
        let header = json!({"alg": "ES256", "kid": kid(key.public_key().as_ref())});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", B64URL.encode(sig.as_ref())))
    }

    /// The claims of a valid token; `now` in Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, TokenError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [h, c, s] = parts.as_slice() else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| -> Result<Value, TokenError> {
            let b = B64URL.decode(p).map_err(|_| TokenError::Malformed)?;
            serde_json::from_slice(&b).map_err(|_| TokenError::Malformed)
        };
        if decode(h)?["alg"] != "ES256" {
            return Err(TokenError::BadSignature);
        }
        let sig = B64URL.decode(s).map_err(|_| TokenError::Malformed)?;
        let input = format!("{h}.{c}");
        let ok = self.verifying.iter().any(|k| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        });
        if !ok {
            return Err(TokenError::BadSignature);
        }
        let claims = decode(c)?;
        if claims["iss"] != self.issuer.as_str() {
            return Err(TokenError::WrongIssuer);
        }
        let aud: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !aud.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
            return Err(TokenError::WrongAudience);
        }
        let exp = claims["exp"].as_i64().ok_or(TokenError::Malformed)?;
        let nbf = claims["nbf"].as_i64().unwrap_or(0);
        if now >= exp || now < nbf {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The claims of a bound token for a ServiceAccount (and the object it is bound to).
pub fn claims(
    issuer: &str,
    audiences: &[String],
    sa: &Value,
    bound: Option<&Value>,
    iat: i64,
    exp: i64,
) -> Value {
    let ns = sa["metadata"]["namespace"].as_str().unwrap_or("");
    let name = sa["metadata"]["name"].as_str().unwrap_or("");
    let mut k8s =
        json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}});
    if let Some(b) = bound {
        let kind = b["kind"].as_str().unwrap_or("").to_lowercase();
        k8s[kind] = json!({"name": b["name"], "uid": b["uid"]});
    }
    json!({"aud": audiences, "exp": exp, "iat": iat, "nbf": iat, "iss": issuer,
        "jti": crate::apiserver::objects::new_uid(), "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{ns}:{name}")})
}

/// The user a valid token's claims stand for.
pub fn user(claims: &Value) -> User {
    let ns = claims["kubernetes.io"]["namespace"].as_str().unwrap_or("");
    User {
        name: claims["sub"].as_str().unwrap_or("").to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SaKeys {
        let kp = rcgen::KeyPair::generate().unwrap();
        SaKeys::load(
            "https://kubernetes.default.svc.cluster.local",
            &[],
            Some(&kp.serialize_pem()),
            &kp.public_key_pem(),
        )
        .unwrap()
    }

    #[test]
    fn issue_verify_expire_and_tamper() {
        let k = keys();
        let sa = json!({"metadata": {"name": "robot", "namespace": "ci", "uid": "u1"}});
        let c = claims(&k.issuer, &k.audiences, &sa, None, 1000, 4600);
        let t = k.sign(&c).unwrap();
        let got = k.verify(&t, 2000).unwrap();
        assert_eq!(user(&got).name, "system:serviceaccount:ci:robot");
        assert!(user(&got)
            .groups
            .contains(&"system:serviceaccounts:ci".to_string()));
        assert_eq!(k.verify(&t, 4600), Err(TokenError::Expired));
        assert_eq!(k.verify(&t, 999), Err(TokenError::Expired), "not yet valid");
        // Another key's signature, a changed claim, a foreign audience.
        assert_eq!(keys().verify(&t, 2000), Err(TokenError::BadSignature));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64URL.encode(json!({"sub": "system:admin"}).to_string()),
            parts[2]
        );
        assert_eq!(k.verify(&forged, 2000), Err(TokenError::BadSignature));
        let other = k
            .sign(&claims(&k.issuer, &["vault".into()], &sa, None, 1000, 4600))
            .unwrap();
        assert_eq!(k.verify(&other, 2000), Err(TokenError::WrongAudience));
        assert_eq!(k.verify("abc.def", 2000), Err(TokenError::Malformed));
    }
}
