//! Abstract edits, resolved against the live state when they run (see `drive`): indices pick
//! among what a side shows at that moment, names come from small pools so collisions happen.
//!
//! The WeCom console names what it creates (and renames) from its own pools: objects it
//! creates are read-only for tagsync's app, and keeping their names apart from the other
//! sides' keeps tagsync from adopting one of them by name behind the test's back (see
//! `drive::Protection`).

use proptest::prelude::*;
use rand::Rng;
use std::fmt;

/// Group names the mall's operator and the hub's admin use.
pub const GROUPS: [&str; 3] = ["G1", "G2", "G3"];
/// Tag names the mall's operator and the hub's admin use.
pub const TAGS: [&str; 4] = ["a", "b", "c", "d"];
/// Group names the WeCom console uses.
pub const CONSOLE_GROUPS: [&str; 2] = ["WG1", "WG2"];
/// Tag names the WeCom console uses.
pub const CONSOLE_TAGS: [&str; 2] = ["w1", "w2"];

/// `order` values: few, so ties happen.
pub fn order_of(i: u8) -> u32 {
    u32::from(i % 5) + 1
}

pub fn pick<T>(items: &[T], i: u8) -> Option<&T> {
    if items.is_empty() {
        None
    } else {
        Some(&items[usize::from(i) % items.len()])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// A person in the WeCom admin console or client.
    Wecom,
    /// The mall's operator.
    Mall,
    /// The hub's admin API.
    Hub,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Wecom => "wecom",
            Side::Mall => "mall",
            Side::Hub => "hub",
        })
    }
}

/// The sides edits come from: `TAGSYNC_PROPTEST_SIDES` (comma-separated), all three by default.
pub fn sides_from_env() -> Vec<Side> {
    let Ok(v) = std::env::var("TAGSYNC_PROPTEST_SIDES") else {
        return vec![Side::Wecom, Side::Mall, Side::Hub];
    };
    let sides: Vec<Side> = v
        .split(',')
        .filter_map(|s| match s.trim() {
            "wecom" => Some(Side::Wecom),
            "mall" => Some(Side::Mall),
            "hub" => Some(Side::Hub),
            _ => None,
        })
        .collect();
    assert!(
        !sides.is_empty(),
        "TAGSYNC_PROPTEST_SIDES={v:?} names no side (wecom, mall, hub)"
    );
    sides
}

/// One change a person makes on one side. Indices pick among the side's current objects
/// (sorted by name); `name` indexes the side's name pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    CreateGroup {
        name: u8,
        order: u8,
        tag: u8,
    },
    CreateTag {
        group: u8,
        name: u8,
        order: u8,
    },
    RenameGroup {
        group: u8,
        name: u8,
    },
    RenameTag {
        tag: u8,
        name: u8,
    },
    ReorderGroup {
        group: u8,
        order: u8,
    },
    ReorderTag {
        tag: u8,
        order: u8,
    },
    MoveTag {
        tag: u8,
        group: u8,
    },
    DeleteTag {
        tag: u8,
    },
    DeleteGroup {
        group: u8,
    },
    /// Tag (`add`) or untag a member: in WeCom on one relation (`relation`) of its customer.
    MemberTag {
        member: u8,
        relation: u8,
        tag: u8,
        add: bool,
    },
}

impl Edit {
    pub fn is_member(&self) -> bool {
        matches!(self, Edit::MemberTag { .. })
    }
}

/// A write tagsync makes on a side, which a `Meanwhile` step has the simulator hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// `POST /members/{id}/tags`.
    MallMemberTags,
    /// `mark_tag`.
    WecomMarkTag,
    /// `PATCH /tags/{id}`.
    MallTag,
    /// `PATCH /tag-groups/{id}`.
    MallGroup,
    /// `edit_corp_tag`.
    WecomEdit,
    /// `add_corp_tag`.
    WecomAdd,
}

impl Write {
    pub fn is_member(self) -> bool {
        matches!(self, Write::MallMemberTags | Write::WecomMarkTag)
    }

    /// An edit that makes tagsync write this (`pick` chooses what it touches): a member
    /// tagged on another side, a tag reordered or created in the hub or the mall.
    pub fn trigger(self, pick: u8) -> (Side, Edit) {
        let member = Edit::MemberTag {
            member: pick,
            relation: pick / 2,
            tag: pick / 4,
            add: true,
        };
        let order = pick / 3;
        match self {
            Write::MallMemberTags if pick % 2 == 0 => (Side::Hub, member),
            Write::MallMemberTags => (Side::Wecom, member),
            Write::WecomMarkTag if pick % 2 == 0 => (Side::Hub, member),
            Write::WecomMarkTag => (Side::Mall, member),
            Write::MallTag => (Side::Hub, Edit::ReorderTag { tag: pick, order }),
            Write::MallGroup => (Side::Hub, Edit::ReorderGroup { group: pick, order }),
            Write::WecomEdit => (Side::Mall, Edit::ReorderTag { tag: pick, order }),
            Write::WecomAdd => (
                Side::Hub,
                Edit::CreateTag {
                    group: pick,
                    name: pick / 2,
                    order,
                },
            ),
        }
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Write::MallMemberTags => "POST /members/{id}/tags",
            Write::WecomMarkTag => "mark_tag",
            Write::MallTag => "PATCH /tags/{id}",
            Write::MallGroup => "PATCH /tag-groups/{id}",
            Write::WecomEdit => "edit_corp_tag",
            Write::WecomAdd => "add_corp_tag",
        })
    }
}

/// One step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Edit(Side, Edit),
    /// Wait until nothing moves (so the next edits start from a quiet system).
    Settle,
    /// Let jobs run a little (0–50 ms) before the next edit.
    Pause(u8),
    /// WeCom re-sends one of the callbacks it delivered already (late, so also reordered).
    Redeliver(u8),
    /// The mall holds its next webhook back until the one after it has gone out.
    HoldNextWebhook,
    /// A third party acts between tagsync's read and its write: the simulator holds
    /// tagsync's next `write` (an edit made at once makes tagsync write it: `Write::trigger`
    /// with `pick`); once it is held, `edit` is made on `side` (for a member write, a change
    /// of that member's tags: its `relation`, `tag` and `add` pick what), then the write is
    /// released. The change must survive and reach every side.
    Meanwhile {
        write: Write,
        side: Side,
        edit: Edit,
        pick: u8,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Edit(side, e) => write!(f, "{side}: {e:?}"),
            Step::Settle => f.write_str("settle"),
            Step::Pause(ms) => write!(f, "pause {} ms", pause_ms(*ms)),
            Step::Redeliver(i) => write!(f, "WeCom re-sends callback pick {i}"),
            Step::HoldNextWebhook => f.write_str("the mall holds its next webhook back"),
            Step::Meanwhile {
                write,
                side,
                edit,
                pick,
            } => {
                let (ts, te) = write.trigger(*pick);
                write!(
                    f,
                    "meanwhile: hold tagsync's next {write} (made by {ts}: {te:?}), then {side}: {edit:?}"
                )
            }
        }
    }
}

pub fn pause_ms(i: u8) -> u64 {
    u64::from(i % 51)
}

/// Delivery chaos and transient faults for one whole run (cleared before the last settle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chaos {
    /// Each WeCom API call (every API the engine uses) fails with this probability.
    pub wecom_fault_pct: u8,
    /// …as HTTP 500 rather than errcode −1.
    pub wecom_http_500: bool,
    /// Each mall API request answers 500 with this probability.
    pub mall_fail_pct: u8,
    /// Each mall webhook is delivered twice with this probability.
    pub duplicate_webhook_pct: u8,
    /// Every mall API answer is held back this long.
    pub mall_delay_ms: u8,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub chaos: Chaos,
    pub steps: Vec<Step>,
}

fn idx() -> impl Strategy<Value = u8> {
    any::<u8>()
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (idx(), idx(), idx()).prop_map(|(name, order, tag)| Edit::CreateGroup { name, order, tag }),
        6 => (idx(), idx(), idx()).prop_map(|(group, name, order)| Edit::CreateTag { group, name, order }),
        4 => (idx(), idx()).prop_map(|(group, name)| Edit::RenameGroup { group, name }),
        6 => (idx(), idx()).prop_map(|(tag, name)| Edit::RenameTag { tag, name }),
        3 => (idx(), idx()).prop_map(|(group, order)| Edit::ReorderGroup { group, order }),
        3 => (idx(), idx()).prop_map(|(tag, order)| Edit::ReorderTag { tag, order }),
        4 => (idx(), idx()).prop_map(|(tag, group)| Edit::MoveTag { tag, group }),
        4 => idx().prop_map(|tag| Edit::DeleteTag { tag }),
        2 => idx().prop_map(|group| Edit::DeleteGroup { group }),
        10 => (idx(), idx(), idx(), any::<bool>())
            .prop_map(|(member, relation, tag, add)| Edit::MemberTag { member, relation, tag, add }),
    ]
}

fn member_edit() -> impl Strategy<Value = Edit> {
    (idx(), idx(), prop_oneof![3 => Just(true), 1 => Just(false)]).prop_map(
        |(relation, tag, add)| Edit::MemberTag {
            member: 0,
            relation,
            tag,
            add,
        },
    )
}

/// A third party acting while tagsync's write is held: mostly member writes (a change of the
/// member being written), else a library write and any edit.
pub fn meanwhile(sides: Vec<Side>) -> impl Strategy<Value = Step> {
    let side = proptest::sample::select(sides);
    let member_write = prop_oneof![Just(Write::MallMemberTags), Just(Write::WecomMarkTag)];
    let library_write = prop_oneof![
        Just(Write::MallTag),
        Just(Write::MallGroup),
        Just(Write::WecomEdit),
        Just(Write::WecomAdd),
    ];
    prop_oneof![
        3 => (member_write, side.clone(), member_edit(), idx())
            .prop_map(|(write, side, edit, pick)| Step::Meanwhile { write, side, edit, pick }),
        1 => (library_write, side, edit(), idx())
            .prop_map(|(write, side, edit, pick)| Step::Meanwhile { write, side, edit, pick }),
    ]
}

pub fn step(sides: Vec<Side>) -> impl Strategy<Value = Step> {
    let side = proptest::sample::select(sides.clone());
    prop_oneof![
        20 => (side, edit()).prop_map(|(s, e)| Step::Edit(s, e)),
        3 => Just(Step::Settle),
        3 => idx().prop_map(Step::Pause),
        1 => idx().prop_map(Step::Redeliver),
        1 => Just(Step::HoldNextWebhook),
        4 => meanwhile(sides),
    ]
}

pub fn chaos() -> impl Strategy<Value = Chaos> {
    (
        prop_oneof![Just(0u8), Just(10), Just(20)],
        any::<bool>(),
        prop_oneof![Just(0u8), Just(10), Just(20)],
        prop_oneof![Just(0u8), Just(30)],
        prop_oneof![Just(0u8), Just(10)],
    )
        .prop_map(
            |(
                wecom_fault_pct,
                wecom_http_500,
                mall_fail_pct,
                duplicate_webhook_pct,
                mall_delay_ms,
            )| {
                Chaos {
                    wecom_fault_pct,
                    wecom_http_500,
                    mall_fail_pct,
                    duplicate_webhook_pct,
                    mall_delay_ms,
                }
            },
        )
}

/// A run: its chaos and 8 to `max_steps` steps, about three in four of them edits
/// (shrinking then removes what does not matter).
pub fn case(sides: Vec<Side>, max_steps: usize) -> impl Strategy<Value = Case> {
    (
        chaos(),
        proptest::collection::vec(step(sides), 8..=max_steps.max(8)),
    )
        .prop_map(|(chaos, steps)| Case { chaos, steps })
}

/// The same mix of edits from a plain seeded generator (for the fixed-size fault test).
pub fn random_edit(rng: &mut impl Rng) -> Edit {
    let mut b = || rng.random::<u8>();
    let (x, y, z) = (b(), b(), b());
    let roll = b() % 46;
    match roll {
        0..=3 => Edit::CreateGroup {
            name: x,
            order: y,
            tag: z,
        },
        4..=9 => Edit::CreateTag {
            group: x,
            name: y,
            order: z,
        },
        10..=12 => Edit::RenameGroup { group: x, name: y },
        13..=18 => Edit::RenameTag { tag: x, name: y },
        19..=21 => Edit::ReorderGroup { group: x, order: y },
        22..=24 => Edit::ReorderTag { tag: x, order: y },
        25..=28 => Edit::MoveTag { tag: x, group: y },
        29..=31 => Edit::DeleteTag { tag: x },
        32 => Edit::DeleteGroup { group: x },
        _ => Edit::MemberTag {
            member: x,
            relation: y,
            tag: z,
            add: b() % 3 != 0,
        },
    }
}
