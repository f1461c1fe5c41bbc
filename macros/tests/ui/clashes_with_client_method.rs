use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn connect(&self, ctx: Context, peer: String) -> Result<(), Status>;
}

fn main() {}
