use squall::Context;

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Option<String>;
}

fn main() {}
