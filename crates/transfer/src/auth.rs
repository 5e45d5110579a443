//! Registry credentials, found where users already keep them:
//!
//! 1. `VMBUILD_REGISTRY_USER` and `VMBUILD_REGISTRY_PASSWORD` (for CI
//!    secrets), for every registry;
//! 2. Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): `auths` entries and the credential helpers
//!    of `credHelpers`/`credsStore` (`docker-credential-*` on `PATH`), read
//!    by the `docker_credential` crate;
//! 3. otherwise anonymous.

use oci_client::secrets::RegistryAuth;

/// What to send a registry, and where it came from (for error messages,
/// never the secret itself).
#[derive(Debug)]
pub struct Credentials {
    pub auth: RegistryAuth,
    pub from: String,
}

/// The credentials for `registry` (`host[:port]`, Docker Hub as
/// `docker.io` or `index.docker.io`).
pub fn credentials(registry: &str) -> Credentials {
    credentials_with(
        registry,
        |k| std::env::var(k).ok(),
        |server| docker_credential::get_credential(server).ok(),
    )
}

/// [`credentials`] with the environment and the Docker config lookup
/// given (for tests).
pub fn credentials_with(
    registry: &str,
    env: impl Fn(&str) -> Option<String>,
    docker: impl Fn(&str) -> Option<docker_credential::DockerCredential>,
) -> Credentials {
    if let (Some(user), Some(password)) = (
        env("VMBUILD_REGISTRY_USER"),
        env("VMBUILD_REGISTRY_PASSWORD"),
    ) {
        return Credentials {
            from: format!("user {user} from VMBUILD_REGISTRY_USER/VMBUILD_REGISTRY_PASSWORD"),
            auth: RegistryAuth::Basic(user, password),
        };
    }
    let hub = matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    let servers: Vec<String> = if hub {
        vec!["https://index.docker.io/v1/".into()]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    for s in &servers {
        match docker(s) {
            Some(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
                return Credentials {
                    from: format!("user {user} from the Docker config"),
                    auth: RegistryAuth::Basic(user, password),
                }
            }
            Some(docker_credential::DockerCredential::IdentityToken(token)) => {
                return Credentials {
                    from: "the identity token from the Docker config".into(),
                    auth: RegistryAuth::Bearer(token),
                }
            }
            None => {}
        }
    }
    Credentials {
        auth: RegistryAuth::Anonymous,
        from: "anonymous access (no credentials found)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docker_credential::DockerCredential as D;

    #[test]
    fn environment_first_then_docker_config_then_anonymous() {
        let env = |k: &str| match k {
            "VMBUILD_REGISTRY_USER" => Some("ci".to_string()),
            "VMBUILD_REGISTRY_PASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let c = credentials_with("r.io", env, |_| {
            Some(D::UsernamePassword("u".into(), "p".into()))
        });
        assert!(matches!(c.auth, RegistryAuth::Basic(ref u, ref p) if u == "ci" && p == "s3cret"));
        assert!(!c.from.contains("s3cret"));
        let none = |_: &str| None;
        let c = credentials_with("localhost:5000", none, |s| {
            (s == "http://localhost:5000").then(|| D::UsernamePassword("u".into(), "p".into()))
        });
        assert!(
            matches!(c.auth, RegistryAuth::Basic(ref u, _) if u == "u"),
            "{c:?}"
        );
        assert_eq!(c.from, "user u from the Docker config");
        let c = credentials_with("docker.io", none, |s| {
            (s == "https://index.docker.io/v1/").then(|| D::IdentityToken("t".into()))
        });
        assert!(matches!(c.auth, RegistryAuth::Bearer(_)));
        let c = credentials_with("r.io", none, |_| None);
        assert!(matches!(c.auth, RegistryAuth::Anonymous));
    }
}
