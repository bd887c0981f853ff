use magnetar_proto::meta as pb;

/// How a transaction compares a key's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// A transaction: if every compare holds, the success ops run, else the failure
/// ops; all-or-nothing either way.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    compares: Vec<pb::Compare>,
    success: Vec<pb::Op>,
    failure: Vec<pb::Op>,
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Put(pb::PutOp {
            key: key.to_vec().into(),
            value: value.to_vec().into(),
            lease,
        })),
    }
}

fn delete_op(key: &[u8], prefix: bool) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Delete(pb::DeleteOp {
            key: key.to_vec().into(),
            prefix,
        })),
    }
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compares the key's version (0 = the key does not exist).
    pub fn when(mut self, key: impl AsRef<[u8]>, op: CompareOp, version: i64) -> Self {
        let op = match op {
            CompareOp::Equal => pb::compare::Op::Equal,
            CompareOp::NotEqual => pb::compare::Op::NotEqual,
            CompareOp::Greater => pb::compare::Op::Greater,
            CompareOp::Less => pb::compare::Op::Less,
        };
        self.compares.push(pb::Compare {
            key: key.as_ref().to_vec().into(),
            op: op as i32,
            version,
        });
        self
    }

    pub fn put(self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.put_with_lease(key, value, 0)
    }

    pub fn put_with_lease(
        mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: i64,
    ) -> Self {
        self.success
            .push(put_op(key.as_ref(), value.as_ref(), lease));
        self
    }

    pub fn delete(mut self, key: impl AsRef<[u8]>) -> Self {
        self.success.push(delete_op(key.as_ref(), false));
        self
    }

    pub fn delete_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.success.push(delete_op(prefix.as_ref(), true));
        self
    }

    pub fn or_else_put(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.failure.push(put_op(key.as_ref(), value.as_ref(), 0));
        self
    }

    pub fn or_else_delete(mut self, key: impl AsRef<[u8]>) -> Self {
        self.failure.push(delete_op(key.as_ref(), false));
        self
    }

    pub(crate) fn into_request(self, request_id: pb::RequestId) -> pb::TxnRequest {
        pb::TxnRequest {
            compares: self.compares,
            success: self.success,
            failure: self.failure,
            request_id: Some(request_id),
        }
    }
}
