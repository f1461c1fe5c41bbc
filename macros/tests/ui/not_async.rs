use squall::{Context, Status};

#[squall::service]
trait Kv {
    fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

fn main() {}
