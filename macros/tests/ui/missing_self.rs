use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn get(ctx: Context, key: String) -> Result<Option<String>, Status>;
}

fn main() {}
