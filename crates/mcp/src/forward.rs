//! Calls on clusters other hosts hold, passed on to them. On a fleet host a
//! tool call naming a cluster this host does not have goes, unchanged, to the
//! MCP endpoint of the host that holds it (over its authenticated HTTP API),
//! and its answer comes back as the caller's answer.

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

/// Another host holding a cluster.
#[derive(Clone, Debug)]
pub struct Holder {
    pub name: String,
    pub url: String,
}

/// Passing calls on: whom to ask, and the fleet's shared bearer token.
#[derive(Clone)]
pub struct Forwarding {
    pub holders: Arc<dyn Holders>,
    /// The token every host of the fleet serves behind.
    pub token: String,
    /// This host's name, sent along so the holder does not pass it on again.
    pub host: String,
}

impl Forwarding {
    /// Passes `request` on to `holder` and returns its answer.
    pub(crate) async fn call(
        &self,
        holder: &Holder,
        request: CallToolRequestParams,
    ) -> Result<CallToolResult, String> {
        let endpoint = format!("{}/mcp", holder.url.trim_end_matches('/'));
        let mut headers = std::collections::HashMap::new();
        headers.insert(
            axum::http::HeaderName::from_static(FORWARDED_HEADER),
            axum::http::HeaderValue::from_str(&self.host).map_err(|e| e.to_string())?,
        );
        let mut config = StreamableHttpClientTransportConfig::with_uri(endpoint.clone())
            .auth_header(&self.token);
        config.custom_headers = headers;
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = ()
            .serve(transport)
            .await
            .map_err(|e| format!("reaching {} at {endpoint}: {e}", holder.name))?;
        let answer = client
            .call_tool(request)
            .await
            .map_err(|e| format!("calling {} at {endpoint}: {e}", holder.name));
        let _ = client.cancel().await;
        answer
    }
}
