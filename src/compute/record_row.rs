//! Table rows of the catalog's VMs: rendered once per change of a VM, copied into every
//! listing after. An administrator's Table of 10k VMs spent most of its time
//! serialising each VM's cells and metadata again; only the age cell changes with time.

use super::objects::GanetiInstance;
use super::record::InstanceRecord;
use super::table::{
    Cell, Column, INSTANCE_AGE_CELL, IncludeObject, InstanceCells, PartialObjectMetadata, Row, instance_cells,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::borrow::Cow;

/// A VM's row without its age, and its `PartialObjectMetadata`, as JSON.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    /// `{"cells":[`, the cells before the age and a comma.
    head: Box<[u8]>,
    /// A comma, the cells after the age and `]`.
    tail: Box<[u8]>,
    metadata: Box<[u8]>,
}

impl Rendered {
    fn of(record: &InstanceRecord) -> serde_json::Result<Self> {
        // Any time: the age cell is left out.
        let cells = record.cells(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let mut head = b"{\"cells\":".to_vec();
        serde_json::to_writer(&mut head, &cells[..INSTANCE_AGE_CELL])?;
        // `[a,b]` -> `[a,b,`
        head.pop();
        head.push(b',');
        let after = serde_json::to_vec(&cells[INSTANCE_AGE_CELL + 1..])?;
        // `[c,d]` -> `,c,d]`
        let mut tail = after;
        tail[0] = b',';
        let metadata = serde_json::to_vec(&PartialObjectMetadata::of(&record.object_meta()))?;
        Ok(Self {
            head: head.into(),
            tail: tail.into(),
            metadata: metadata.into(),
        })
    }
}

impl Row for InstanceRecord {
    fn columns() -> &'static [Column] {
        GanetiInstance::columns()
    }

    fn metadata(&self) -> Cow<'_, ObjectMeta> {
        Cow::Owned(self.object_meta())
    }

    fn cells(&self, now: k8s_openapi::jiff::Timestamp) -> Vec<Cell<'_>> {
        let f = &self.f;
        instance_cells(InstanceCells {
            name: Some(&f.name),
            cluster: &f.cluster,
            state: &f.state,
            node: &f.primary_node,
            owner: f.owner.as_ref().map(|(kind, name)| (*kind, &**name)),
            locked: f.locked,
            created: f.created.as_ref(),
            ips: &f.ips,
            vcpus: f.vcpus,
            memory_mib: f.memory_mib,
            disk_mib: f.disk_mib,
            os: &f.os,
            uuid: &f.uuid,
            needs_reboot: super::objects::GanetimgrNotes::of(&f.tags).needs_reboot,
            now,
        })
    }

    fn write_row(
        &self,
        out: &mut Vec<u8>,
        include: IncludeObject,
        now: k8s_openapi::jiff::Timestamp,
    ) -> serde_json::Result<()> {
        let rendered = match self.rendered.get() {
            Some(r) => r,
            None => {
                let r = Rendered::of(self)?;
                // Another listing may have set it meanwhile: either is the same.
                self.rendered.get_or_init(|| Box::new(r))
            }
        };
        out.extend_from_slice(&rendered.head);
        serde_json::to_writer(&mut *out, &Cell::Age(self.f.created.as_ref(), now))?;
        out.extend_from_slice(&rendered.tail);
        out.extend_from_slice(b",\"object\":");
        match include {
            IncludeObject::None => out.extend_from_slice(b"null"),
            IncludeObject::Metadata => out.extend_from_slice(&rendered.metadata),
            IncludeObject::Object => serde_json::to_writer(&mut *out, self)?,
        }
        out.push(b'}');
        Ok(())
    }
}
