use squall::{Context, Status};

#[squall::service(nmae = "KV")]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

fn main() {}
