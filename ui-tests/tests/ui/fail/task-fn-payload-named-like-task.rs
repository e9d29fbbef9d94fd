//! `#[task]` on `send_email` declares the struct `SendEmail`: a payload type of that name
//! would be declared twice.

use runcast::prelude::*;
use runcast::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SendEmail {
    pub to: String,
}

#[task(id = "send-email")]
async fn send_email(email: SendEmail) -> Result<bool, String> {
    Ok(!email.to.is_empty())
}

async fn app() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder().task::<SendEmail>().build()?;
    let email = SendEmail { to: "ann@example.com".into() };
    let run = engine.trigger::<SendEmail>(email).await?;
    println!("{:?}", engine.wait(&run).await?.output.map(|sent| !sent));
    Ok(())
}

fn main() {
    let _ = app;
}
