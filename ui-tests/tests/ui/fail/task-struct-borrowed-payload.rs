//! A task's payload is an owned type, on a struct task too: `Vec<u8>`, not `&[u8]`.

use runcast::prelude::*;
use runcast::Engine;

#[task(id = "upload", payload = &'static [u8], output = u64)]
pub struct Upload;

async fn app(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let run = engine.trigger::<Upload>(b"bytes".to_vec()).await?;
    let done = engine.wait(&run).await?;
    println!("{} {:?}", Upload::ID, done.output);
    Ok(())
}

fn main() {
    let _ = app;
}
