use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

async fn call(client: KvClient<squall::Channel>) {
    let _ = client.gett("key".to_owned()).await;
}

fn main() {}
