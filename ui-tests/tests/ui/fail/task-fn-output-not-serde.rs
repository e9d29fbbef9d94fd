//! The output of a task function (the `Ok` type of its `Result`) crosses the wire: it
//! implements `Serialize` and `Deserialize`.

use runcast::task;

#[derive(schemars::JsonSchema)]
pub struct Resized {
    pub url: String,
}

#[task(id = "resize-image")]
async fn resize_image(width: u32) -> Result<Resized, String> {
    Ok(Resized {
        url: width.to_string(),
    })
}

fn main() {}
