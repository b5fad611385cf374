use super::*;

#[test]
fn sort_range_inside_the_prefix_walks_from_the_cursor() {
    use Direction::*;
    assert_eq!(
        SortRange::plan("T#", Some("T#5"), Ascending),
        SortRange::After("T#5")
    );
    assert_eq!(
        SortRange::plan("T#", Some("T#5"), Descending),
        SortRange::Before("T#5")
    );
    assert_eq!(
        SortRange::plan("", Some("x"), Descending),
        SortRange::Before("x")
    );
}

#[test]
fn sort_range_outside_the_prefix_is_the_whole_prefix_or_nothing() {
    use Direction::*;
    assert_eq!(
        SortRange::plan("T#", Some("G#1"), Ascending),
        SortRange::Prefix
    );
    assert_eq!(
        SortRange::plan("T#", Some("G#1"), Descending),
        SortRange::Empty
    );
    assert_eq!(
        SortRange::plan("G#", Some("T#1"), Ascending),
        SortRange::Empty
    );
    assert_eq!(
        SortRange::plan("G#", Some("T#1"), Descending),
        SortRange::Prefix
    );
    assert_eq!(SortRange::plan("", None, Ascending), SortRange::All);
    assert_eq!(SortRange::plan("G#", None, Descending), SortRange::Prefix);
}

#[test]
fn items_round_trip_through_attributes() {
    let mut item = Item::new("LEASE#x", "-", 3, "{}".into());
    item.expiration = Some(1_700_000_000);
    item.lock_until = Some(1_700_000_000_123);
    item.owner = Some("worker-1".into());
    item.gsi1pk = Some("TENANTS".into());
    item.gsi1sk = Some("t1".into());
    assert_eq!(from_attributes(&to_attributes(item.clone())).unwrap(), item);
}
