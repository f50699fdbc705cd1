//! One PullImage through a CRI socket (Kinglet's or containerd's), timed by the client:
//! prints `RESULT pull_ms <milliseconds>` and the image id. Used by `scripts/bench-pull.sh`.
//!
//! Usage: `bench_pull --socket PATH --image REF`

use std::path::PathBuf;
use std::time::Instant;

use kinglet_proto::v1;
use kinglet_tests::connect;
use v1::image_service_client::ImageServiceClient;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut socket = PathBuf::from("/run/kinglet/kinglet.sock");
    let mut image = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().expect("--socket PATH").into(),
            "--image" => image = Some(args.next().expect("--image REF")),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let image = image.ok_or_else(|| anyhow::anyhow!("--image REF is required"))?;
    let mut client = ImageServiceClient::new(connect(&socket).await?);
    let t0 = Instant::now();
    let id = client
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("pull {image}: {}", s.message()))?
        .into_inner()
        .image_ref;
    println!(
        "RESULT pull_ms {:.1} {id}",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
