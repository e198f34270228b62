//! The MCP server: rehearse's command set ([`rehearse_api`]) as MCP tools, and
//! clusters and run reports as resources, over stdio or streamable HTTP.
//!
//! This is an adapter only: arguments are parsed into a
//! [`rehearse_api::Command`], carried out by [`Api::execute`] on a blocking
//! thread, and the result (or [`rehearse_api::ApiError`]) is rendered as a
//! tool result with structured content.

mod forward;

use std::sync::Arc;

pub use forward::{Forwarding, Holder, Holders, Placement, FORWARDED_HEADER};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};

use rehearse_api::{catalogue, Api, ApiError, Command, ProgressSink};

const INSTRUCTIONS: &str = "rehearse gives you disposable multi-node Debian 12 clusters (real systemd, root) to try infrastructure code on before it touches real machines. Typical loop: provision → write_file / exec → check → fix and check again → destroy. Tool errors carry a stable code, a message saying what to do next, and retryable.";

/// The MCP server over one [`Api`]. Cheap to clone: HTTP sessions each get one.
#[derive(Clone)]
pub struct RehearseServer {
    api: Arc<Api>,
    /// On a fleet host: where calls on other hosts' clusters go.
    forwarding: Option<Forwarding>,
}

impl RehearseServer {
    pub fn new(api: Arc<Api>) -> Self {
        RehearseServer {
            api,
            forwarding: None,
        }
    }

    /// Calls naming a cluster another host of the fleet holds are passed on
    /// to that host.
    pub fn forwarding(mut self, forwarding: Option<Forwarding>) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// The host holding the cluster `args` name, when this host does not and
    /// the call may travel (it has not already).
    async fn holder_for(
        &self,
        args: &Value,
        context: &RequestContext<RoleServer>,
    ) -> Option<(Forwarding, Holder)> {
        let forwarding = self.forwarding.clone()?;
        let cluster = args.get("cluster")?.as_str()?.to_owned();
        let already = context
            .extensions
            .get::<axum::http::request::Parts>()
            .is_some_and(|parts| parts.headers.contains_key(FORWARDED_HEADER));
        if already {
            return None;
        }
        let holders = Arc::clone(&forwarding.holders);
        let holder = tokio::task::spawn_blocking(move || holders.holder_of(&cluster))
            .await
            .ok()??;
        Some((forwarding, holder))
    }

    /// Where work that boots clusters goes, when this host is one of a
    /// fleet and the call did not already travel.
    fn placement(&self, context: &RequestContext<RoleServer>) -> Option<Arc<dyn Placement>> {
        let placement = self.forwarding.as_ref()?.placement.clone()?;
        let already = context
            .extensions
            .get::<axum::http::request::Parts>()
            .is_some_and(|parts| parts.headers.contains_key(FORWARDED_HEADER));
        (!already).then_some(placement)
    }

    /// A placed tool call, answered from the fleet; None when `name` is not placed.
    async fn placed(
        &self,
        name: &str,
        args: &Value,
        context: &RequestContext<RoleServer>,
    ) -> Option<CallToolResult> {
        let placement = self.placement(context)?;
        let (name, args) = (name.to_owned(), args.clone());
        let answer = tokio::task::spawn_blocking(move || match name.as_str() {
            "job_status" | "job_kill" => {
                let id = args.get("job_id")?.as_str()?.to_owned();
                placement.job(&id, name == "job_kill")
            }
            _ => placement.place(&name, args),
        })
        .await
        .ok()??;
        Some(match answer {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => error_result(&e),
        })
    }

    fn tools() -> Vec<Tool> {
        catalogue()
            .into_iter()
            .map(|spec| {
                let schema = match spec.input_schema {
                    Value::Object(map) => map,
                    _ => Default::default(),
                };
                let mut annotations = ToolAnnotations::new();
                annotations.read_only_hint = Some(spec.read_only);
                Tool::new(spec.name, spec.description, schema).with_annotations(annotations)
            })
            .collect()
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let passed_on = request.clone();
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let named_args = args.clone();
        let command = match Command::parse(&request.name, args) {
            Ok(c) => c,
            Err(e) => return error_result(&e),
        };
        if matches!(
            command,
            Command::RunScenario(_) | Command::Converge(_) | Command::Provision(_)
        ) {
            if let Some(answer) = self.placed(&request.name, &named_args, &context).await {
                return answer;
            }
        }
        let progress = match (command.is_long(), context.meta.get_progress_token()) {
            (true, Some(token)) => Some(progress_sink(token, context.peer.clone())),
            _ => None,
        };
        let api = Arc::clone(&self.api);
        let name = command.name();
        // A long command runs as a job: the call answers its id at once.
        let answer = move || {
            if command.is_long() {
                api.start(command, progress)
                    .map(|started| serde_json::to_value(started).unwrap_or_default())
            } else {
                api.execute(command, progress)
                    .map(|outcome| outcome.to_json())
            }
        };
        match tokio::task::spawn_blocking(answer).await {
            Ok(Ok(answer)) => CallToolResult::structured(answer),
            Ok(Err(e)) if e.code == rehearse_api::ErrorCode::JobNotFound => self
                .placed(&request.name, &named_args, &context)
                .await
                .unwrap_or_else(|| error_result(&e)),
            Ok(Err(e)) if e.code == rehearse_api::ErrorCode::ClusterNotFound => {
                match self.holder_for(&named_args, &context).await {
                    Some((forwarding, holder)) => {
                        tracing::debug!(tool = name, host = %holder.name, "passing the call on to the host holding the cluster");
                        forwarding
                            .call(&holder, passed_on)
                            .await
                            .unwrap_or_else(|why| {
                                error_result(&ApiError::new(
                                    rehearse_api::ErrorCode::HostUnreachable,
                                    format!("the cluster is held by fleet host {}, which did not answer: {why}", holder.name),
                                    true,
                                ))
                            })
                    }
                    None => error_result(&e),
                }
            }
            Ok(Err(e)) => error_result(&e),
            Err(join) => {
                tracing::error!(tool = name, error = %join, "tool panicked");
                error_result(&ApiError::new(
                    rehearse_api::ErrorCode::Internal,
                    format!(
                        "{name} failed inside the server ({join}); report this as a rehearse bug"
                    ),
                    false,
                ))
            }
        }
    }

    fn read(&self, uri: &str) -> Result<Value, ErrorData> {
        let as_mcp = |e: ApiError| {
            ErrorData::resource_not_found(e.message.clone(), Some(json!({"code": e.code})))
        };
        let unknown = || {
            ErrorData::resource_not_found(
                format!("no resource {uri}; resources are rehearse://clusters, rehearse://clusters/{{id}} and rehearse://runs/{{run_id}}"),
                None,
            )
        };
        let parse = |name: &str| Command::parse(name, Value::Null).map_err(as_mcp);
        match uri.strip_prefix("rehearse://") {
            Some("clusters") => self
                .api
                .execute(parse("list")?, None)
                .map(|o| o.to_json())
                .map_err(as_mcp),
            Some(rest) => {
                if let Some(id) = rest.strip_prefix("clusters/") {
                    let cmd = Command::parse("cluster", json!({"cluster": id})).map_err(as_mcp)?;
                    self.api
                        .execute(cmd, None)
                        .map(|o| o.to_json())
                        .map_err(as_mcp)
                } else if let Some(run) = rest.strip_prefix("runs/") {
                    self.api.run_report(run).map_err(as_mcp)
                } else {
                    Err(unknown())
                }
            }
            None => Err(unknown()),
        }
    }
}

/// A tool error the model can act on: the code, what to do, whether to retry.
fn error_result(e: &ApiError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "error {}: {}{} (retryable: {}{})",
        e.code,
        e.message,
        e.hint
            .as_ref()
            .map(|h| format!("; {h}"))
            .unwrap_or_default(),
        e.retryable,
        e.field
            .as_ref()
            .map(|f| format!(", field: {f}"))
            .unwrap_or_default()
    ))]);
    result.structured_content = Some(json!({ "error": e }));
    result
}

/// Forwards a long command's progress to the client as MCP progress notifications.
fn progress_sink(token: rmcp::model::ProgressToken, peer: rmcp::Peer<RoleServer>) -> ProgressSink {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<rehearse_api::Progress>();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let param = ProgressNotificationParam::new(token.clone(), p.progress as f64)
                .with_message(p.message);
            if peer.notify_progress(param).await.is_err() {
                break;
            }
        }
    });
    Box::new(move |p| {
        let _ = tx.send(p);
    })
}

impl ServerHandler for RehearseServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("rehearse", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self.call(request, context).await.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = vec![Resource::new("rehearse://clusters", "clusters")
            .with_description("Live clusters with their nodes, IPs and time left")
            .with_mime_type("application/json")];
        let api = Arc::clone(&self.api);
        let ids = tokio::task::spawn_blocking(move || {
            api.engine()
                .list()
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for id in ids {
            resources.push(
                Resource::new(format!("rehearse://clusters/{id}"), format!("cluster {id}"))
                    .with_mime_type("application/json"),
            );
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("rehearse://clusters/{id}", "cluster")
                .with_description("One cluster: nodes, IPs, groups, networks, time left")
                .with_mime_type("application/json"),
            ResourceTemplate::new("rehearse://runs/{run_id}", "run report")
                .with_description(
                    "The full report of a scenario run (run_id from job_status of run_scenario)",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let server = self.clone();
        let uri = request.uri.clone();
        let value = tokio::task::spawn_blocking(move || server.read(&uri))
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))??;
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, request.uri).with_mime_type("application/json")
        ])
        .into())
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Serves MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(api: Arc<Api>) -> Result<(), Error> {
    let service = RehearseServer::new(api)
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}

/// MCP over streamable HTTP, mounted at `/mcp`. `loopback` says whether the
/// server listens on loopback only: otherwise it is reached by other host
/// names than localhost, which the transport must then accept. The caller
/// puts authentication in front (the web server's bearer token).
pub fn http_router(api: Arc<Api>, loopback: bool) -> axum::Router {
    http_router_with(api, loopback, None)
}

/// [`http_router`] on a fleet host: calls on clusters other hosts hold are
/// passed on to them.
pub fn http_router_with(
    api: Arc<Api>,
    loopback: bool,
    forwarding: Option<Forwarding>,
) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

    let mut config = StreamableHttpServerConfig::default();
    if !loopback {
        config.allowed_hosts.clear();
    }
    let service = StreamableHttpService::new(
        move || Ok(RehearseServer::new(Arc::clone(&api)).forwarding(forwarding.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new().nest_service("/mcp", service)
}

/// A fresh random token for `serve` when none is given.
pub fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

pub use rehearse_api as api;

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// [`serve_stdio`] on a runtime of its own, for a synchronous caller.
pub fn run_stdio(api: Arc<Api>) -> Result<(), Error> {
    runtime()?.block_on(serve_stdio(api))
}
