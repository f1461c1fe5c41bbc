use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

async fn call(client: KvClient<squall::Channel>) {
    let _ = client.get(42).await;
}

fn main() {}
