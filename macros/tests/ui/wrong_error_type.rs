use squall::Context;

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, std::io::Error>;
}

fn main() {}
