//! The connection to the Docker Engine (through its HTTP API, with the
//! `bollard` crate) and the engine-side bookkeeping of vmbuild's images:
//! connect and negotiate the API version, describe the engine for
//! `vmbuild doctor`, import an image once, list and remove what vmbuild
//! imported.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptions, ListImagesOptions, RemoveContainerOptions,
    RemoveImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::plan::{
    image_changes, image_ref, IMAGE_REPO, KIND_ENV_IMAGE, LABEL_KEY, LABEL_KIND, LABEL_MANAGED,
    LABEL_SESSION,
};
use super::DockerError;

/// Where the engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// How long the first answer (`/_ping`, `/version`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// bollard's per-request timeout, in seconds: long, since an image import
/// uploads a whole root filesystem in one request; the build's own
/// deadline ([`crate::stop::Stopper`]) bounds a run.
const REQUEST_TIMEOUT_S: u64 = 24 * 3600;

/// The engine's address: `DOCKER_HOST` when set (and not empty), else
/// [`DEFAULT_SOCKET`].
pub fn engine_address(docker_host: Option<&str>) -> String {
    match docker_host {
        Some(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => DEFAULT_SOCKET.to_string(),
    }
}

/// A live, version-negotiated connection.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// Where it answered (`unix:///...` or `tcp://...`).
    pub address: String,
}

/// What `vmbuild doctor` shows about the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub address: String,
    /// The engine's version, e.g. `20.10.24`.
    pub version: String,
    /// Its API version, e.g. `1.41`, the one vmbuild then speaks.
    pub api_version: String,
    /// e.g. `overlay2`.
    pub storage_driver: String,
    /// The engine's data root.
    pub data_root: String,
}

impl Engine {
    /// Connects to `DOCKER_HOST` or the default socket and negotiates the
    /// API version down to the engine's (engine 20.10 speaks 1.41).
    /// [`DockerError::NotRunning`] says how to start a daemon.
    pub async fn connect() -> Result<Engine, DockerError> {
        Self::connect_to(engine_address(std::env::var("DOCKER_HOST").ok().as_deref())).await
    }

    /// [`Engine::connect`] to `address` (`unix://PATH` or `tcp://HOST:PORT`).
    pub async fn connect_to(address: String) -> Result<Engine, DockerError> {
        let not_running = |why: String| DockerError::NotRunning {
            address: address.clone(),
            why,
        };
        let docker = if let Some(path) = address.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        } else if address.starts_with("tcp://") || address.starts_with("http://") {
            Docker::connect_with_http(&address, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(DockerError::BadAddress(address));
        }
        .map_err(|e| not_running(short(&e)))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| not_running(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| not_running(short(&e)))?;
        Ok(Engine { docker, address })
    }

    /// Version, API version, storage driver and data root.
    pub async fn info(&self) -> Result<EngineInfo, DockerError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(api("asking the engine's version"))?;
        let i = self
            .docker
            .info()
            .await
            .map_err(api("asking the engine's info"))?;
        Ok(EngineInfo {
            address: self.address.clone(),
            version: v.version.unwrap_or_default(),
            api_version: self.docker.client_version().to_string(),
            storage_driver: i.driver.unwrap_or_default(),
            data_root: i.docker_root_dir.unwrap_or_default(),
        })
    }

    /// The host's address on the engine's default bridge (how a
    /// `--network user` container reaches a service on the host), e.g.
    /// `172.17.0.1`.
    pub async fn bridge_gateway(&self) -> Result<String, DockerError> {
        let n = self
            .docker
            .inspect_network("bridge", None)
            .await
            .map_err(api("inspecting the bridge network"))?;
        let configs = n.ipam.and_then(|i| i.config).unwrap_or_default();
        configs
            .iter()
            .find_map(|c| c.gateway.clone())
            .or_else(|| {
                configs
                    .iter()
                    .find_map(|c| first_host(c.subnet.as_deref()?))
            })
            .ok_or_else(|| DockerError::Api {
                during: "inspecting the bridge network".into(),
                why: "it has no gateway address".into(),
            })
    }

    /// Whether `vmbuild/env:<key>` is in the engine.
    pub async fn has_image(&self, key: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(&image_ref(key)).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(api("looking up an image")(e)),
        }
    }

    /// Imports the root filesystem tarball `tar` as `vmbuild/env:<key>`,
    /// labelled ([`image_changes`]); the body is streamed from the file,
    /// counting the bytes read for the engine into `sent`.
    pub async fn import(
        &self,
        key: &str,
        tar: &Path,
        sent: Arc<AtomicU64>,
    ) -> Result<(), DockerError> {
        let file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| DockerError::Io(format!("opening {}", tar.display()), e))?;
        let body = futures_util::stream::try_unfold(file, move |mut f| {
            let sent = sent.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 1 << 20];
                let n = f.read(&mut buf).await?;
                sent.fetch_add(n as u64, Ordering::Relaxed);
                buf.truncate(n);
                Ok::<_, std::io::Error>((n > 0).then(|| (bytes::Bytes::from(buf), f)))
            }
        });
        let mut options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(IMAGE_REPO)
            .tag(key)
            .build();
        options.changes = image_changes(key);
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        while let Some(item) = progress.next().await {
            item.map_err(api("importing the root filesystem"))?;
        }
        if !self.has_image(key).await? {
            return Err(DockerError::Api {
                during: "importing the root filesystem".into(),
                why: format!("the engine finished but has no {}", image_ref(key)),
            });
        }
        Ok(())
    }

    /// vmbuild's imported images: (key, size in bytes, created, unix s).
    pub async fn env_images(&self) -> Result<Vec<EngineImage>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_KIND}={KIND_ENV_IMAGE}")],
        )]);
        let list = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("listing images"))?;
        let mut out: Vec<EngineImage> = list
            .into_iter()
            .filter_map(|i| {
                let key = i.labels.get(LABEL_KEY)?.clone();
                Some(EngineImage {
                    key,
                    id: i.id,
                    size: u64::try_from(i.size).unwrap_or(0),
                    created: i.created,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes `vmbuild/env:<key>` (not in use by a container of a live
    /// build: the engine refuses that, and so does this).
    pub async fn remove_image(&self, key: &str) -> Result<(), DockerError> {
        self.docker
            .remove_image(
                &image_ref(key),
                Some(RemoveImageOptions {
                    force: false,
                    noprune: false,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map(drop)
            .map_err(api("removing an image"))
    }

    /// Ids of every container with vmbuild's label, running or not.
    pub async fn labelled_containers(&self) -> Result<Vec<String>, DockerError> {
        self.containers_labelled(LABEL_MANAGED.to_string()).await
    }

    /// Ids of the containers of one session ([`super::plan::LABEL_SESSION`]).
    pub async fn labelled_containers_of(&self, session: &str) -> Result<Vec<String>, DockerError> {
        self.containers_labelled(format!("{LABEL_SESSION}={session}"))
            .await
    }

    async fn containers_labelled(&self, label: String) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![label])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(api("listing containers"))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Kills and removes container `id` (gone already is fine).
    pub async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // 409: a removal already in progress (an abort racing a drop).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(api("removing the container")(e)),
        }
    }
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` ->
/// `172.17.0.1`): the default bridge's gateway, which engine 20.10 does
/// not list for the default bridge.
pub fn first_host(subnet: &str) -> Option<String> {
    let (net, _) = subnet.split_once('/')?;
    let ip: std::net::Ipv4Addr = net.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(ip).checked_add(1)?).to_string())
}

/// One imported environment image as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineImage {
    /// The content key (`vmbuild/env:<key>`).
    pub key: String,
    /// The engine's image id (`sha256:...`).
    pub id: String,
    /// Bytes, as the engine counts them.
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
}

/// Maps a bollard error to [`DockerError::Api`] with what was being done.
pub(crate) fn api(during: &'static str) -> impl Fn(bollard::errors::Error) -> DockerError {
    move |e| DockerError::Api {
        during: during.into(),
        why: short(&e),
    }
}

/// A bollard error on one line (the engine's own message when it sent one).
pub(crate) fn short(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            message,
            status_code,
        } => {
            format!("{} (HTTP {status_code})", message.trim())
        }
        other => other.to_string().replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_wins_over_the_default_socket() {
        assert_eq!(engine_address(None), DEFAULT_SOCKET);
        assert_eq!(engine_address(Some("  ")), DEFAULT_SOCKET);
        assert_eq!(
            engine_address(Some("unix:///run/x.sock")),
            "unix:///run/x.sock"
        );
    }

    #[test]
    fn the_bridge_gateway_is_the_subnets_first_host() {
        assert_eq!(first_host("172.17.0.0/16").as_deref(), Some("172.17.0.1"));
        assert_eq!(first_host("fd00::/64"), None);
        assert_eq!(first_host("garbage"), None);
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_one_line_error_that_says_how_to_start_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let sock = format!("unix://{}/nothing.sock", dir.path().display());
        let e = Engine::connect_to(sock.clone()).await.unwrap_err();
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains(&sock) && s.contains("dockerd"), "{s}");
        assert_eq!(
            crate::error::RunError::from(e).exit_code(),
            crate::error::EXIT_SETUP
        );
    }
}
