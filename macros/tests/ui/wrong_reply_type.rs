use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

async fn call(client: KvClient<squall::Channel>) -> Result<u64, Status> {
    let count: u64 = client.get("key".to_owned()).await?;
    Ok(count)
}

fn main() {}
