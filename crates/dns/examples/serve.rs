//! Serves the DNS of an inventory on one address, alone (no other service):
//! `serve LAB.toml 127.0.0.1:5300 [UDP_WORKERS]`. For benchmarks and poking
//! at the service with kdig; bootlabd is the real thing.

use bootlab_dns::{ServeOptions, serve_with};
use bootlab_state::Shared;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(lab), Some(addr)) = (args.next(), args.next()) else {
        return Err("usage: serve LAB.toml ADDR [UDP_WORKERS]".into());
    };
    let mut options = ServeOptions::default();
    if let Some(n) = args.next() {
        options.udp_workers = n.parse()?;
    }
    let inv = bootlab_inventory::load(std::path::Path::new(&lab))?;
    let udp = tokio::net::UdpSocket::bind(&addr).await?;
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    let (shared, _publisher) = Shared::new(inv).expect("boot scripts render");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    serve_with(udp, tcp, shared, None, shutdown, options).await?;
    Ok(())
}
