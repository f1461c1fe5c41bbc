use std::rc::Rc;

use squall::{Context, Status};

#[squall::service]
trait Kv {
    async fn get(&self, ctx: Context, key: String) -> Result<Option<String>, Status>;
}

struct Store;

impl Kv for Store {
    async fn get(&self, _ctx: Context, key: String) -> Result<Option<String>, Status> {
        // Held across an await: the handler's future is not Send.
        let local = Rc::new(key);
        tokio::task::yield_now().await;
        Ok(Some((*local).clone()))
    }
}

fn main() {}
