//! The HTTPS server: TLS with optional client certificates, authentication, routing, and the
//! resource handlers on top of the generic registry.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, Method};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use skiff_api::resources::ResourceInfo;
use skiff_api::status::StatusError;
use skiff_store::Storage;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{AllowAll, Attributes, Authorizer, Decision, TokenFile, UserInfo};
use crate::certs::Pki;
use crate::field_validation as fv;
use crate::http::{self as h, Response};
use crate::metrics::Metrics;
use crate::registry::{DeleteOptions, ListRequest, Registry, WriteOptions};
use crate::request::{parse_path, PathKind, Query, ResourcePath};
use crate::watchcache::{CacheEvent, CachedObject, WatchCache, WatchEventType};

/// Which store backs the server.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded SQLite file under the data dir.
    Sqlite,
    /// An etcd cluster.
    Etcd { endpoints: Vec<String> },
}

/// Everything `skiff server` can be told.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port.
    pub secure_port: u16,
    pub store: StoreConfig,
    /// Extra names or addresses for the serving certificate.
    pub tls_san: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub service_cidr: ipnet::Ipv4Net,
    pub node_port_range: (u16, u16),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/skiff"),
            bind_address: IpAddr::from([0, 0, 0, 0]),
            secure_port: 6443,
            store: StoreConfig::Sqlite,
            tls_san: Vec::new(),
            token_file: None,
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            node_port_range: (30000, 32767),
        }
    }
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Stop accepting requests and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Run until the process is asked to stop (SIGINT or SIGTERM).
    pub async fn wait_for_signal(self) {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

pub struct App {
    pub registry: Arc<Registry>,
    metrics: Metrics,
    tokens: TokenFile,
    authz: Box<dyn Authorizer>,
    server_address: String,
}

/// Open the configured store.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Storage>> {
    Ok(match &config.store {
        StoreConfig::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let path = config.data_dir.join("state.db");
            let s = skiff_store::sqlite::SqliteStore::open(&path, Default::default())
                .with_context(|| format!("opening the store at {}", path.display()))?;
            s as Arc<dyn Storage>
        }
        StoreConfig::Etcd { endpoints } => {
            let s = skiff_store::etcd::EtcdStore::connect(endpoints)
                .await
                .context("connecting to etcd")?;
            Arc::new(s) as Arc<dyn Storage>
        }
    })
}

/// Start the API server: PKI, store, watch cache, bootstrap objects, then the HTTPS listener.
pub async fn start(config: Config) -> Result<ServerHandle> {
    let t0 = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let pki = Pki::load_or_create(
        &config.data_dir,
        &crate::certs::serving_names(&config.tls_san),
    )?;
    let store = open_store(&config).await?;
    let cache = WatchCache::start(store.clone())
        .await
        .context("loading the watch cache")?;
    let alloc = crate::registry::alloc::Allocator::new(config.service_cidr, config.node_port_range);
    let registry = Arc::new(Registry::new(store, cache, alloc));

    let listener = TcpListener::bind((config.bind_address, config.secure_port))
        .await
        .with_context(|| format!("binding {}:{}", config.bind_address, config.secure_port))?;
    let addr = listener.local_addr()?;
    let host = if config.bind_address.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.bind_address.to_string()
    };
    let server_url = format!("https://{host}:{}", addr.port());
    let kubeconfig = config.data_dir.join("admin.kubeconfig");
    std::fs::write(&kubeconfig, pki.admin_kubeconfig(&server_url))
        .with_context(|| format!("writing {}", kubeconfig.display()))?;

    bootstrap(&registry, addr, &host).await?;
    crate::namespace_finalizer::spawn(registry.clone());
    crate::crd_controller::spawn(registry.clone());

    let tokens = match &config.token_file {
        Some(p) => TokenFile::load(p)?,
        None => TokenFile::default(),
    };
    let app = Arc::new(App {
        registry: registry.clone(),
        metrics: Metrics::new(),
        tokens,
        authz: Box::new(AllowAll),
        server_address: format!("{host}:{}", addr.port()),
    });
    let tls = tls_config(&pki)?;
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, tls, app, rx));
    tracing::info!(
        address = %addr,
        kubeconfig = %kubeconfig.display(),
        startup_ms = t0.elapsed().as_millis() as u64,
        "skiff API server ready"
    );
    Ok(ServerHandle {
        addr,
        kubeconfig,
        registry,
        shutdown,
        task,
    })
}

fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing the serving certificate")?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .context("parsing the serving key")?
        .context("no serving key")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("serving certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::auth::user_from_cert(c.as_ref()));
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(app, user, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// What a request did, for metrics and logs.
struct Outcome {
    verb: &'static str,
    group: String,
    resource: String,
    subresource: String,
}

async fn handle(
    app: Arc<App>,
    cert_user: Option<UserInfo>,
    req: http::Request<Incoming>,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut outcome = Outcome {
        verb: "",
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
    };
    let resp = route(&app, cert_user, req, &mut outcome).await;
    let code = resp.status().as_u16();
    if !outcome.verb.is_empty() {
        app.metrics.observe(
            outcome.verb,
            &outcome.group,
            &outcome.resource,
            &outcome.subresource,
            code,
            start.elapsed().as_secs_f64(),
        );
    }
    tracing::debug!(%method, %path, code, ms = start.elapsed().as_millis() as u64, "request");
    resp
}

fn version_info() -> Value {
    json!({
        "major": crate::KUBE_MAJOR,
        "minor": crate::KUBE_MINOR,
        "gitVersion": crate::KUBE_GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

async fn route(
    app: &Arc<App>,
    cert_user: Option<UserInfo>,
    req: http::Request<Incoming>,
    outcome: &mut Outcome,
) -> Response {
    let path = req.uri().path().to_string();
    // Health and version need no credentials.
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/ping" | "/livez/ping" | "/readyz/ping" => {
            return h::text(200, "ok")
        }
        "/version" | "/version/" => return h::json(200, &version_info()),
        _ => {}
    }
    let user = match authenticate(app, cert_user, req.headers()) {
        Ok(u) => u,
        Err(e) => return h::error(&e),
    };
    let query = Query::parse(req.uri().query());
    match parse_path(&path) {
        PathKind::DiscoveryRoot { legacy } => {
            let accept = header_str(req.headers(), header::ACCEPT);
            if let Some(ct) = aggregated_media_type(accept) {
                let api_version = if ct.contains("v=v2beta1") {
                    "apidiscovery.k8s.io/v2beta1"
                } else {
                    "apidiscovery.k8s.io/v2"
                };
                let doc =
                    crate::discovery::aggregated(&app.registry.resources(), legacy, api_version);
                return h::bytes_response(200, &ct, serde_json::to_vec(&doc).unwrap_or_default());
            }
            if legacy {
                h::json(200, &crate::discovery::api_versions(&app.server_address))
            } else {
                h::json(
                    200,
                    &crate::discovery::api_group_list(&app.registry.resources()),
                )
            }
        }
        PathKind::DiscoveryGroup { group } => {
            match crate::discovery::group(&app.registry.resources(), &group) {
                Some(v) => h::json(200, &v),
                None => h::error(&StatusError::path_not_found()),
            }
        }
        PathKind::DiscoveryGroupVersion { group, version } => {
            match crate::discovery::resource_list(&app.registry.resources(), &group, &version) {
                Some(v) => h::json(200, &v),
                None => h::error(&StatusError::path_not_found()),
            }
        }
        PathKind::Resource(rp) => {
            match resource_request(app, &user, req, rp, query, outcome).await {
                Ok(r) => r,
                Err(e) => h::error(&e),
            }
        }
        PathKind::Other => match path.as_str() {
            "/metrics" => h::bytes_response(200, "text/plain; version=0.0.4", app.metrics.render()),
            p if p.starts_with("/openapi/") => crate::openapi::serve(
                &app.registry.resources(),
                p,
                query.get("hash"),
                req.headers(),
            )
            .unwrap_or_else(|| h::error(&StatusError::path_not_found())),
            "/" => h::json(
                200,
                &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics", "/readyz", "/version"]}),
            ),
            _ => h::error(&StatusError::path_not_found()),
        },
    }
}

fn header_str(headers: &http::HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The first aggregated-discovery media type the client accepts, echoed exactly, as kubectl
/// requires.
fn aggregated_media_type(accept: &str) -> Option<String> {
    accept
        .split(',')
        .map(str::trim)
        .find(|m| {
            m.contains("as=APIGroupDiscoveryList")
                && m.contains("g=apidiscovery.k8s.io")
                && (m.contains("v=v2;") || m.contains("v=v2beta1") || m.ends_with("v=v2"))
        })
        .map(|m| {
            // Drop quality parameters; keep the media type and its g/v/as.
            m.split(';')
                .filter(|p| !p.trim_start().starts_with("q="))
                .collect::<Vec<_>>()
                .join(";")
        })
}

fn authenticate(
    app: &App,
    cert_user: Option<UserInfo>,
    headers: &http::HeaderMap,
) -> Result<UserInfo, StatusError> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) {
            return app
                .tokens
                .authenticate(token)
                .ok_or_else(StatusError::unauthorized);
        }
    }
    cert_user.ok_or_else(StatusError::unauthorized)
}

/// Whether the client asked for a server-side Table.
fn wants_table(headers: &http::HeaderMap) -> bool {
    let accept = header_str(headers, header::ACCEPT);
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

fn write_options(query: &Query) -> Result<WriteOptions, StatusError> {
    let dry = query.all("dryRun");
    Ok(WriteOptions {
        dry_run: crate::registry::parse_dry_run(&dry)?,
        field_manager: query.get("fieldManager").map(str::to_string),
        force: query.flag("force"),
        ..WriteOptions::default()
    })
}

fn list_request(
    info: &ResourceInfo,
    ns: Option<&str>,
    query: &Query,
) -> Result<ListRequest, StatusError> {
    let label_selector = match query.get("labelSelector") {
        Some(s) if !s.is_empty() => {
            Some(skiff_api::selector::LabelSelector::parse(s).map_err(|e| {
                StatusError::bad_request(format!("unable to parse requirement: {e}"))
            })?)
        }
        _ => None,
    };
    let field_selector = match query.get("fieldSelector") {
        Some(s) if !s.is_empty() => {
            let fs = skiff_api::fields::FieldSelector::parse(s)
                .map_err(|e| StatusError::bad_request(format!("invalid field selector: {e}")))?;
            fs.validate(&info.group, &info.plural)
                .map_err(StatusError::bad_request)?;
            Some(fs)
        }
        _ => None,
    };
    Ok(ListRequest {
        namespace: ns.map(str::to_string),
        label_selector,
        field_selector,
        limit: query
            .get("limit")
            .and_then(|l| l.parse::<i64>().ok())
            .filter(|l| *l > 0)
            .map(|l| l as usize)
            .unwrap_or(0),
        continue_token: query
            .get("continue")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        resource_version: query.get("resourceVersion").map(str::to_string),
        resource_version_match: query
            .get("resourceVersionMatch")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

async fn resource_request(
    app: &Arc<App>,
    user: &UserInfo,
    req: http::Request<Incoming>,
    rp: ResourcePath,
    query: Query,
    outcome: &mut Outcome,
) -> Result<Response, StatusError> {
    let reg = &app.registry;
    let info = reg
        .lookup(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(StatusError::path_not_found)?;
    outcome.group = info.group.to_string();
    outcome.resource = info.plural.to_string();
    outcome.subresource = rp.subresource.clone().unwrap_or_default();
    if !info.namespaced() && rp.namespace.is_some() {
        return Err(StatusError::path_not_found());
    }
    if let Some(sub) = &rp.subresource {
        if info.subresource(sub).is_none() {
            return Err(StatusError::path_not_found());
        }
    }
    let ns = rp.namespace.as_deref();
    let method = req.method().clone();
    let verb: &'static str = match (&method, rp.name.is_some()) {
        (&Method::GET, _) if query.flag("watch") => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(StatusError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource"
            )))
        }
    };
    outcome.verb = match verb {
        "watch" => "WATCH",
        "get" => "GET",
        "list" => "LIST",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" => "DELETE",
        _ => "DELETECOLLECTION",
    };
    if let Decision::Deny(why) = app.authz.authorize(&Attributes {
        user,
        verb,
        group: &info.group,
        resource: &info.plural,
        subresource: rp.subresource.as_deref(),
        namespace: ns,
        name: rp.name.as_deref(),
        path: req.uri().path(),
    }) {
        return Err(StatusError::forbidden(why));
    }
    if info.namespaced() && ns.is_none() && !matches!(verb, "list" | "watch") {
        // Creating a namespaced object needs a namespace in the path.
        return Err(StatusError::path_not_found());
    }
    let table = wants_table(req.headers());
    let headers = req.headers().clone();
    let media = h::media_type(&headers);
    // Writes without a fieldManager are recorded under the client's name, taken from its
    // User-Agent as upstream does (`kubectl/v1.33.0 (linux/amd64) ...` is "kubectl").
    let user_agent = header_str(&headers, header::USER_AGENT);
    let query = query.with_default("fieldManager", user_agent.split('/').next().unwrap_or(""));
    let body = match verb {
        "create" | "update" | "patch" | "delete" | "deletecollection" => {
            h::read_body(&headers, req.into_body(), h::MAX_BODY).await?
        }
        _ => Bytes::new(),
    };
    let name = rp.name.as_deref().unwrap_or("");
    match (rp.subresource.as_deref(), verb) {
        (None, "get") => {
            let obj = reg.get(&info, ns, name).await?;
            if table {
                return Ok(h::json(200, &table_of(&info, &[obj], None, &query)));
            }
            Ok(h::json(200, &obj))
        }
        (None, "list") => {
            let lr = list_request(&info, ns, &query)?;
            let res = reg.list(&info, &lr).await?;
            if table {
                let objs: Vec<Value> = res
                    .items
                    .iter()
                    .map(|o| reg.present(&info, o.value()))
                    .collect();
                let mut t = table_of(&info, &objs, Some(res.revision), &query);
                if let Some(c) = &res.continue_token {
                    t["metadata"]["continue"] = json!(c);
                }
                return Ok(h::json(200, &t));
            }
            Ok(list_response(reg, &info, res))
        }
        (None, "watch") => {
            let lr = list_request(&info, ns, &query)?;
            watch(app.clone(), info, lr, query, table).await
        }
        (None, "create") => {
            let mut obj = h::decode_body(&media, &body)?;
            let warnings = fv::check_object(&info, &query, &media, &body, &mut obj)?;
            let opts = write_options(&query)?;
            let out = reg.create(&info, ns, obj, &opts).await?;
            let mut resp = h::json(201, &out);
            fv::add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (None, "update") => {
            let mut obj = h::decode_body(&media, &body)?;
            let warnings = fv::check_object(&info, &query, &media, &body, &mut obj)?;
            let opts = write_options(&query)?;
            let out = reg.update(&info, ns, name, obj, &opts).await?;
            let mut resp = h::json(200, &out);
            fv::add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (None, "patch") if media.starts_with("application/apply-patch") => {
            let mut applied = h::decode_body("application/yaml", &body)?;
            let warnings = fv::check_patch(&info, &query, &media, &body, &mut applied, |_| None)?;
            let opts = write_options(&query)?;
            let (out, created) = reg.apply(&info, ns, name, &applied, &opts).await?;
            let mut resp = h::json(if created { 201 } else { 200 }, &out);
            fv::add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (sub @ (None | Some("status")), "patch") => {
            let mut patch = h::decode_body(&media, &body)?;
            // A strict failure of a JSON or merge patch shows the patched object.
            let current = match media.as_str() {
                "application/merge-patch+json" | "application/json-patch+json"
                    if query.get("fieldValidation") == Some("Strict") =>
                {
                    reg.get(&info, ns, name).await.ok()
                }
                _ => None,
            };
            let warnings = fv::check_patch(&info, &query, &media, &body, &mut patch, |p| {
                let cur = current.as_ref()?;
                crate::registry::apply_patch(&info, cur, &media, p)
                    .ok()
                    .map(|v| v.to_string())
            })?;
            let opts = write_options(&query)?;
            let out = reg
                .patch(&info, ns, name, &media, &patch, sub.is_some(), &opts)
                .await?;
            let mut resp = h::json(200, &out);
            fv::add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (None, "delete") => {
            let body_v = if body.is_empty() {
                json!({})
            } else {
                h::decode_body(&media, &body)?
            };
            let opts = DeleteOptions::from_request(&body_v, &query)?;
            let (obj, gone) = reg.delete(&info, ns, name, &opts).await?;
            // Pods and Services answer with the object, others with a Status once gone.
            if gone && !(info.group.is_empty() && matches!(&*info.plural, "pods" | "services")) {
                return Ok(h::json(
                    200,
                    &skiff_api::status::success_status(
                        &info.group,
                        &info.plural,
                        name,
                        obj.pointer("/metadata/uid").and_then(Value::as_str),
                    ),
                ));
            }
            Ok(h::json(200, &obj))
        }
        (None, "deletecollection") => {
            let body_v = if body.is_empty() {
                json!({})
            } else {
                h::decode_body(&media, &body)?
            };
            let opts = DeleteOptions::from_request(&body_v, &query)?;
            let lr = list_request(&info, ns, &query)?;
            let res = reg.list(&info, &lr).await?;
            let mut items = Vec::new();
            for o in res.items {
                let v = o.value();
                let n = v
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ons = v
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match reg.delete(&info, ons.as_deref(), &n, &opts).await {
                    Ok((obj, _)) => items.push(obj),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(h::json(
                200,
                &json!({
                    "kind": format!("{}List", info.kind),
                    "apiVersion": info.api_version(),
                    "metadata": {},
                    "items": items,
                }),
            ))
        }
        (Some("status"), "get") => Ok(h::json(200, &reg.get(&info, ns, name).await?)),
        (Some("status"), "update") => {
            let mut obj = h::decode_body(&media, &body)?;
            let warnings = fv::check_object(&info, &query, &media, &body, &mut obj)?;
            let opts = write_options(&query)?;
            let mut resp = h::json(200, &reg.update_status(&info, ns, name, obj, &opts).await?);
            fv::add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        (Some("scale"), v) => scale(reg, &info, ns, name, v, &media, &body, &query).await,
        (Some("eviction"), "create") => {
            let obj = h::decode_body(&media, &body)?;
            let ns = ns.unwrap_or_default();
            let opts = crate::registry::eviction::delete_options(&obj, name, ns, &query)?;
            let (code, status) = reg.evict(&info, ns, name, opts).await?;
            Ok(h::json(code, &status))
        }
        (Some("binding"), "create") => {
            let obj = h::decode_body(&media, &body)?;
            let opts = write_options(&query)?;
            binding(reg, &info, ns, name, obj, &opts).await
        }
        (Some("finalize"), "update") => {
            let obj = h::decode_body(&media, &body)?;
            let opts = write_options(&query)?;
            let fins = obj
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let out = reg
                .guaranteed_update(&info, None, name, None, &opts, |cur| {
                    let mut n = cur.clone();
                    n["spec"]["finalizers"] = fins.clone();
                    Ok(n)
                })
                .await?;
            Ok(h::json(200, &out))
        }
        (Some(sub), _) => Err(StatusError::method_not_allowed(format!(
            "the server does not support {verb} on {}/{sub} yet",
            info.plural
        ))),
        _ => Err(StatusError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// A list response assembled from the cached JSON of each item, without re-encoding them.
fn list_response(
    reg: &Registry,
    info: &ResourceInfo,
    res: crate::registry::ListResponse,
) -> Response {
    let mut meta = json!({"resourceVersion": res.revision.to_string()});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    let head = json!({
        "kind": format!("{}List", info.kind),
        "apiVersion": info.api_version(),
        "metadata": meta,
    });
    let mut buf = serde_json::to_vec(&head).unwrap_or_default();
    buf.pop(); // the closing brace
    buf.extend_from_slice(b",\"items\":[");
    // Other versions of the same objects (and custom resources, whatever version wrote them)
    // are presented in the version asked for.
    let convert = info.stored_as.is_some() || info.custom.is_some();
    for (i, o) in res.items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if convert {
            let v = reg.present(info, o.value());
            buf.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
        } else {
            buf.extend_from_slice(&o.json);
        }
    }
    buf.extend_from_slice(b"]}");
    h::bytes_response(200, "application/json", buf)
}

/// A server-side Table of objects.
fn table_of(info: &ResourceInfo, objs: &[Value], rev: Option<i64>, query: &Query) -> Value {
    let now = chrono::Utc::now();
    let include = query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = skiff_api::table::cells_for(info, o, now);
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(r) = rev {
        meta["resourceVersion"] = json!(r.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": skiff_api::table::columns_json_for(info),
        "rows": rows,
    })
}

/// The `autoscaling/v1 Scale` view of a workload.
fn scale_of(info: &ResourceInfo, obj: &Value) -> Value {
    if let Some(paths) = info.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        use skiff_api::crd::get_path;
        let int = |p: &str| get_path(obj, p).and_then(Value::as_i64).unwrap_or(0);
        let selector = paths
            .label_selector
            .as_deref()
            .and_then(|p| get_path(obj, p))
            .and_then(Value::as_str)
            .unwrap_or("");
        let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
        return json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": int(&paths.spec_replicas)},
            "status": {"replicas": int(&paths.status_replicas), "selector": selector},
        });
    }
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            if info.plural == "replicationcontrollers" {
                // A ReplicationController's selector is a plain map.
                let m: Vec<String> = s
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect()
                    })
                    .unwrap_or_default();
                m.join(",")
            } else {
                skiff_api::selector::from_label_selector(s)
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            }
        })
        .unwrap_or_default();
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    reg: &Registry,
    info: &Arc<ResourceInfo>,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    media: &str,
    body: &[u8],
    query: &Query,
) -> Result<Response, StatusError> {
    match verb {
        "get" => {
            let obj = reg.get(info, ns, name).await?;
            Ok(h::json(200, &scale_of(info, &obj)))
        }
        "update" | "patch" => {
            // kubectl sends PUT /scale with no Content-Type: that is JSON.
            let media = if media.is_empty() {
                "application/json"
            } else {
                media
            };
            let input = h::decode_body(media, body)?;
            let opts = write_options(query)?;
            let precondition = if verb == "update" {
                input
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            } else {
                None
            };
            let scale_info = ResourceInfo {
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
                ..(**info).clone()
            };
            let out = reg
                .guaranteed_update(info, ns, name, precondition.as_deref(), &opts, |cur| {
                    let current_scale = scale_of(info, cur);
                    let new_scale = if verb == "update" {
                        input.clone()
                    } else {
                        crate::registry::apply_patch(&scale_info, &current_scale, media, &input)?
                    };
                    let replicas = new_scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if replicas < 0 {
                        return Err(StatusError::invalid(
                            "autoscaling",
                            "Scale",
                            name,
                            &[skiff_api::status::FieldError::invalid(
                                "spec.replicas",
                                json!(replicas),
                                "must be greater than or equal to 0",
                            )],
                        ));
                    }
                    let mut n = cur.clone();
                    match info.custom.as_ref().and_then(|c| c.scale.as_ref()) {
                        Some(paths) => {
                            skiff_api::crd::set_path(&mut n, &paths.spec_replicas, json!(replicas))
                        }
                        None => n["spec"]["replicas"] = json!(replicas),
                    }
                    let g = n
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    if scale_of(info, cur)["spec"] != scale_of(info, &n)["spec"] {
                        n["metadata"]["generation"] = json!(g + 1);
                    }
                    crate::registry::track(info, &opts, "scale", Some(cur), &mut n);
                    Ok(n)
                })
                .await?;
            Ok(h::json(200, &scale_of(info, &out)))
        }
        _ => Err(StatusError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// `pods/binding`: assign a pod to a node, once.
async fn binding(
    reg: &Registry,
    info: &Arc<ResourceInfo>,
    ns: Option<&str>,
    name: &str,
    body: Value,
    opts: &WriteOptions,
) -> Result<Response, StatusError> {
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            StatusError::invalid(
                "",
                "Binding",
                name,
                &[skiff_api::status::FieldError::required("target.name", "")],
            )
        })?
        .to_string();
    let pod_name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_string();
    reg.guaranteed_update(info, ns, &pod_name, None, opts, |cur| {
        if crate::registry::object::is_deleting(cur) {
            return Err(StatusError::conflict_msg(
                "",
                "pods",
                &pod_name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(existing) = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return Err(StatusError::conflict_msg(
                "",
                "pods",
                &pod_name,
                &format!("pod {pod_name} is already assigned to node {existing:?}"),
            ));
        }
        let mut n = cur.clone();
        n["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": crate::registry::object::now_rfc3339()});
        let conds = n["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(cond);
        n["status"]["conditions"] = json!(conds);
        Ok(n)
    })
    .await?;
    Ok(h::json(
        201,
        &skiff_api::status::success_status("", "pods", &pod_name, None),
    ))
}

// ------------------------------------------------------------------------------- watch

async fn watch(
    app: Arc<App>,
    info: Arc<ResourceInfo>,
    lr: ListRequest,
    query: Query,
    table: bool,
) -> Result<Response, StatusError> {
    let reg = app.registry.clone();
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_else(|| {
            use rand::Rng;
            // Upstream's default: between 30 and 60 minutes.
            Duration::from_secs(rand::rng().random_range(1800..3600))
        });
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents") == Some("true");
    let rv = lr.resource_version.clone().unwrap_or_default();
    let prefix = match (&lr.namespace, info.namespaced()) {
        (Some(ns), true) => format!("{}{ns}/", info.key_prefix()),
        _ => info.key_prefix(),
    };
    // Where to start, and the initial ADDED events when the client has no state yet.
    let (start, initial) = if rv.is_empty() || rv == "0" || send_initial {
        if rv.is_empty() {
            reg.cache
                .sync()
                .await
                .map_err(|e| StatusError::timeout(e.to_string()))?;
        }
        let (items, rev, _) = reg
            .cache
            .list(&prefix, None, 0, &|o| reg.matches(&info, &lr, o));
        (rev, items)
    } else {
        (crate::registry::parse_rv(&rv)?, Vec::new())
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let cols = table.then(|| skiff_api::table::columns_json_for(&info));
    let encode = {
        let info = info.clone();
        let reg = reg.clone();
        move |ty: &str, o: &CachedObject, first: bool| -> Bytes {
            let mut line = Vec::with_capacity(o.json.len() + 32);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(ty.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            if let Some(cols) = &cols {
                let v = reg.present(&info, o.value());
                let mut t = json!({
                    "kind": "Table", "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": o.revision.to_string()},
                    "rows": [{
                        "cells": skiff_api::table::cells_for(&info, &v, chrono::Utc::now()),
                        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                   "metadata": v.get("metadata").cloned().unwrap_or(json!({}))},
                    }],
                });
                if first {
                    t["columnDefinitions"] = cols.clone();
                } else {
                    t["columnDefinitions"] = json!([]);
                }
                line.extend_from_slice(&serde_json::to_vec(&t).unwrap_or_default());
            } else if info.stored_as.is_some() || info.custom.is_some() {
                let v = reg.present(&info, o.value());
                line.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
            } else {
                line.extend_from_slice(&o.json);
            }
            line.extend_from_slice(b"}\n");
            Bytes::from(line)
        }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = true;
        for o in &initial {
            if tx.send(encode("ADDED", o, first)).await.is_err() {
                return;
            }
            first = false;
        }
        let bookmark = |rev: i64, initial_end: bool| -> Bytes {
            let mut meta = json!({"resourceVersion": rev.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            let obj =
                json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta});
            let mut b =
                serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
            b.push(b'\n');
            Bytes::from(b)
        };
        if send_initial && bookmarks && tx.send(bookmark(start, true)).await.is_err() {
            return;
        }
        let mut last = start;
        let mut rev_rx = reg.cache.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            match reg.cache.events_after(last) {
                Err(e) => {
                    let status = StatusError {
                        code: 410,
                        reason: "Expired",
                        message: e.to_string(),
                        details: None,
                    }
                    .to_status();
                    let mut b = serde_json::to_vec(&json!({"type": "ERROR", "object": status}))
                        .unwrap_or_default();
                    b.push(b'\n');
                    let _ = tx.send(Bytes::from(b)).await;
                    return;
                }
                Ok((events, _)) => {
                    for ev in events {
                        last = ev.revision;
                        if !ev.object.key.starts_with(&prefix) {
                            continue;
                        }
                        if let Some((ty, obj)) = filter_event(&reg, &info, &lr, &ev) {
                            if tx.send(encode(ty, obj, first)).await.is_err() {
                                return;
                            }
                            first = false;
                        }
                    }
                }
            }
            tokio::select! {
                _ = rev_rx.changed() => {}
                _ = tick.tick() => {
                    if bookmarks && tx.send(bookmark(last.max(reg.cache.revision().min(last)), false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let ct = if table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    Ok(h::streaming(ct, stream))
}

/// How an event looks to a watcher with selectors: an object that stops matching is
/// DELETED for it, one that starts matching is ADDED, as upstream's cacher does.
fn filter_event<'a>(
    reg: &Registry,
    info: &ResourceInfo,
    lr: &ListRequest,
    ev: &'a CacheEvent,
) -> Option<(&'static str, &'a CachedObject)> {
    let now = reg.matches(info, lr, &ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| reg.matches(info, lr, p));
    match ev.kind {
        WatchEventType::Added => now.then_some(("ADDED", &*ev.object)),
        WatchEventType::Deleted => (before || now).then_some(("DELETED", &*ev.object)),
        WatchEventType::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", &*ev.object)),
            (false, true) => Some(("ADDED", &*ev.object)),
            (true, false) => Some(("DELETED", &*ev.object)),
            (false, false) => None,
        },
    }
}

// ------------------------------------------------------------------------------- bootstrap

/// Objects every cluster has from the start: the four namespaces and the `kubernetes`
/// Service with its Endpoints.
async fn bootstrap(reg: &Registry, addr: SocketAddr, host: &str) -> Result<()> {
    let opts = WriteOptions::default();
    let ns_info = reg
        .by_kind("", "Namespace")
        .context("namespaces resource")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(&ns_info, None, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating namespace {ns}: {e}"),
        }
    }
    // The two priority classes every cluster has.
    let pc_info = reg
        .by_kind("scheduling.k8s.io", "PriorityClass")
        .context("priorityclasses resource")?;
    for (name, value, description) in [
        ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description});
        match reg.create(&pc_info, None, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => anyhow::bail!("creating priority class {name}: {e}"),
        }
    }
    let svc_info = reg.by_kind("", "Service").context("services resource")?;
    let ip = reg.alloc.first_ip().to_string();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
    });
    match reg.create(&svc_info, Some("default"), svc, &opts).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => anyhow::bail!("creating the kubernetes service: {e}"),
    }
    let ep_info = reg.by_kind("", "Endpoints").context("endpoints resource")?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}],
                     "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}],
    });
    match reg
        .create(&ep_info, Some("default"), ep.clone(), &opts)
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 => {
            // The port may differ from the last start.
            reg.guaranteed_update(
                &ep_info,
                Some("default"),
                "kubernetes",
                None,
                &opts,
                |cur| {
                    let mut n = cur.clone();
                    n["subsets"] = ep["subsets"].clone();
                    Ok(n)
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("updating the kubernetes endpoints: {e}"))?;
        }
        Err(e) => anyhow::bail!("creating the kubernetes endpoints: {e}"),
    }
    Ok(())
}
