//! The corp's directory as tagsync last read it from WeCom (wecom-api.md §13): the department
//! tree and which departments each staff member is in. Department-scoped operators and group
//! scopes ("include sub-departments") are decided over it.
//!
//! Kept whole per tenant (one stored item, re-read from WeCom on demand, nightly, and when a
//! `change_contact` callback says the tree or a staff member changed): WeCom's department ids
//! are small integers and the tree is read in one call, so a full re-read is the simplest way
//! never to drift.

use super::{TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One department (`department/list`: `id`, `name`, `parentid`, `order`). The root's
/// `parent_id` is 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub id: u32,
    pub name: String,
    pub parent_id: u32,
    #[serde(default)]
    pub order: u32,
}

/// One staff member (`user/simplelist`: `userid`, `name`, `department`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    pub userid: String,
    pub name: String,
    pub departments: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub tenant: TenantId,
    /// Sorted by id.
    pub departments: Vec<Department>,
    /// Sorted by userid.
    pub staff: Vec<StaffMember>,
    /// When it was read from WeCom.
    pub refreshed_at: Timestamp,
    #[serde(skip)]
    pub version: u64,
}

impl Directory {
    /// A directory of these departments and staff, kept sorted (so two reads of the same
    /// corp compare equal).
    pub fn new(
        tenant: TenantId,
        mut departments: Vec<Department>,
        mut staff: Vec<StaffMember>,
        refreshed_at: Timestamp,
    ) -> Self {
        departments.sort_by_key(|d| d.id);
        departments.dedup_by_key(|d| d.id);
        staff.sort_by(|a, b| a.userid.cmp(&b.userid));
        staff.dedup_by(|a, b| a.userid == b.userid);
        for s in &mut staff {
            s.departments.sort_unstable();
            s.departments.dedup();
        }
        Self {
            tenant,
            departments,
            staff,
            refreshed_at,
            version: 0,
        }
    }

    pub fn department(&self, id: u32) -> Option<&Department> {
        self.departments
            .binary_search_by_key(&id, |d| d.id)
            .ok()
            .map(|i| &self.departments[i])
    }

    pub fn staff_member(&self, userid: &str) -> Option<&StaffMember> {
        self.staff
            .binary_search_by(|s| s.userid.as_str().cmp(userid))
            .ok()
            .map(|i| &self.staff[i])
    }

    /// `dept` and every department below it, at any depth. An unknown department is still
    /// its own (a scope may name a department the last read did not see yet).
    pub fn descendants(&self, dept: u32) -> BTreeSet<u32> {
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for d in &self.departments {
            if d.id != d.parent_id {
                children.entry(d.parent_id).or_default().push(d.id);
            }
        }
        let mut out = BTreeSet::new();
        let mut todo = vec![dept];
        // `insert` refusing a seen id also ends a cycle a corrupt tree could have.
        while let Some(d) = todo.pop() {
            if out.insert(d) {
                todo.extend(children.get(&d).into_iter().flatten().copied());
            }
        }
        out
    }

    /// Every department in `depts` and below them.
    pub fn expand(&self, depts: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
        depts
            .into_iter()
            .flat_map(|d| self.descendants(d))
            .collect()
    }

    /// The departments `userid` is in (empty for someone the directory does not know).
    pub fn departments_of(&self, userid: &str) -> &[u32] {
        self.staff_member(userid)
            .map_or(&[], |s| s.departments.as_slice())
    }

    /// Whether `userid` is in one of `depts` (already expanded by the caller).
    pub fn is_staff_in(&self, userid: &str, depts: &BTreeSet<u32>) -> bool {
        self.departments_of(userid)
            .iter()
            .any(|d| depts.contains(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(id: u32, parent_id: u32) -> Department {
        Department {
            id,
            name: format!("d{id}"),
            parent_id,
            order: 0,
        }
    }

    fn dir() -> Directory {
        Directory::new(
            TenantId::parse("acme".to_owned()).unwrap(),
            vec![dept(1, 0), dept(2, 1), dept(3, 2), dept(4, 1), dept(5, 3)],
            vec![StaffMember {
                userid: "zhang".into(),
                name: "张三".into(),
                departments: vec![5, 4, 5],
            }],
            Timestamp::from_millis(0),
        )
    }

    #[test]
    fn descendants_include_the_department_and_every_level_below() {
        let d = dir();
        assert_eq!(d.descendants(2), BTreeSet::from([2, 3, 5]));
        assert_eq!(d.descendants(1), BTreeSet::from([1, 2, 3, 4, 5]));
        assert_eq!(d.descendants(4), BTreeSet::from([4]));
        assert_eq!(d.descendants(99), BTreeSet::from([99]));
    }

    #[test]
    fn a_cycle_in_a_corrupt_tree_ends() {
        let mut d = dir();
        d.departments.push(dept(6, 7));
        d.departments.push(dept(7, 6));
        assert_eq!(d.descendants(6), BTreeSet::from([6, 7]));
    }

    #[test]
    fn staff_departments_are_sorted_and_looked_up() {
        let d = dir();
        assert_eq!(d.departments_of("zhang"), &[4, 5]);
        assert!(d.departments_of("nobody").is_empty());
        assert!(d.is_staff_in("zhang", &d.descendants(2)));
        assert!(!d.is_staff_in("zhang", &BTreeSet::from([1])));
    }
}
