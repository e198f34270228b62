//! A fleet host's MCP server. Calls on clusters other hosts hold are passed
//! on to them: a tool call naming a cluster this host does not have goes,
//! unchanged, to the MCP endpoint of the host that holds it (over its
//! authenticated HTTP API), and its answer comes back as the caller's
//! answer. Work that boots clusters (`run_scenario`, `converge`,
//! `provision`) is placed through the fleet's queue on the host with room.

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;

/// The header a passed-on call carries, naming the host that passed it on: a
/// call that already travelled once is answered where it lands.
pub const FORWARDED_HEADER: &str = "x-rehearse-forwarded-by";

/// Where a cluster lives when this host does not hold it.
pub trait Holders: Send + Sync {
    /// The base URL (e.g. `http://10.0.0.2:7878`) of the host holding
    /// `cluster`, if another host of the fleet does.
    fn holder_of(&self, cluster: &str) -> Option<Holder>;
}

/// Where work that boots clusters goes on a fleet host.
pub trait Placement: Send + Sync {
    /// Places the tool call `command` with `args` on the host of the fleet
    /// with room, answering what the tool answers (`job_id` for a long
    /// command, the cluster for `provision`); None for tools that are not
    /// placed.
    fn place(
        &self,
        command: &str,
        args: serde_json::Value,
    ) -> Option<Result<serde_json::Value, rehearse_api::ApiError>>;

    /// `job_status` (or `job_kill` when `kill`) of a job the fleet placed;
    /// None when the fleet has no such job.
    fn job(
        &self,
        job_id: &str,
        kill: bool,
    ) -> Option<Result<serde_json::Value, rehearse_api::ApiError>>;
}

/// Another host holding a cluster.
#[derive(Clone, Debug)]
pub struct Holder {
    pub name: String,
    pub url: String,
}

/// An MCP session with another host, kept for the calls that follow.
type Session = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// Passing calls on: whom to ask, and the fleet's shared bearer token.
#[derive(Clone)]
pub struct Forwarding {
    pub holders: Arc<dyn Holders>,
    /// The token every host of the fleet serves behind.
    pub token: String,
    /// This host's name, sent along so the holder does not pass it on again.
    pub host: String,
    /// Where work that boots clusters is placed (none: on this host).
    pub placement: Option<Arc<dyn Placement>>,
    /// One open session per holder's endpoint, so a passed-on call does not
    /// pay for a new session's handshake each time.
    pub sessions: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Session>>>,
}

impl Forwarding {
    /// Forwarding to the fleet's other hosts, with no session open yet.
    pub fn new(
        holders: Arc<dyn Holders>,
        token: String,
        host: String,
        placement: Option<Arc<dyn Placement>>,
    ) -> Forwarding {
        Forwarding {
            holders,
            token,
            host,
            placement,
            sessions: Arc::default(),
        }
    }

    /// Passes `request` on to `holder` and returns its answer. A kept session
    /// that no longer answers (the holder restarted) is dropped and the call
    /// made once more on a new one.
    pub(crate) async fn call(
        &self,
        holder: &Holder,
        request: CallToolRequestParams,
    ) -> Result<CallToolResult, String> {
        let endpoint = format!("{}/mcp", holder.url.trim_end_matches('/'));
        let mut last = String::new();
        for _ in 0..2 {
            let peer = match self.session(&endpoint, holder).await {
                Ok(peer) => peer,
                Err(why) => return Err(why),
            };
            match peer.call_tool(request.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    last = format!("calling {} at {endpoint}: {e}", holder.name);
                    if let Some(stale) = self.sessions.lock().await.remove(&endpoint) {
                        let _ = stale.cancel().await;
                    }
                }
            }
        }
        Err(last)
    }

    /// The kept session with `endpoint`, opened when there is none (or it closed).
    async fn session(
        &self,
        endpoint: &str,
        holder: &Holder,
    ) -> Result<rmcp::Peer<rmcp::RoleClient>, String> {
        let mut sessions = self.sessions.lock().await;
        if let Some(open) = sessions.get(endpoint) {
            if !open.is_closed() {
                return Ok(open.peer().clone());
            }
        }
        let mut headers = std::collections::HashMap::new();
        headers.insert(
            axum::http::HeaderName::from_static(FORWARDED_HEADER),
            axum::http::HeaderValue::from_str(&self.host).map_err(|e| e.to_string())?,
        );
        let mut config = StreamableHttpClientTransportConfig::with_uri(endpoint.to_owned())
            .auth_header(&self.token);
        config.custom_headers = headers;
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = ()
            .serve(transport)
            .await
            .map_err(|e| format!("reaching {} at {endpoint}: {e}", holder.name))?;
        let peer = client.peer().clone();
        sessions.insert(endpoint.to_owned(), client);
        Ok(peer)
    }
}
