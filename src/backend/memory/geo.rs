//! Geo commands (GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH,
//! GEOSEARCHSTORE, and the older GEORADIUS and GEORADIUSBYMEMBER with
//! their _RO forms) on sorted sets, as Redis 7.0 keeps them: a member's
//! score is its 52-bit interleaved geohash. Encoding, the cells searched
//! around a point and the distance formula follow Redis's, so positions,
//! distances, hashes and the order of unsorted results match it.

use bytes::Bytes;

use super::own;
use super::store::{Store, Value};
use super::typed::{modify, read, store};
use super::zset::ZSet;
use crate::wire::error::{CmdError, CmdResult};
use crate::wire::reply::Reply;
use crate::wire::util::{float_arg, int_arg, is, parse_f64};

const LONG_MIN: f64 = -180.0;
const LONG_MAX: f64 = 180.0;
const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const STEP_MAX: u8 = 26;
const EARTH_RADIUS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

#[derive(Clone, Copy, Default, PartialEq)]
struct Hash {
    bits: u64,
    step: u8,
}

impl Hash {
    const ZERO: Hash = Hash { bits: 0, step: 0 };
}

#[derive(Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
}

const WGS84_LONG: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const WGS84_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

struct Area {
    long: Range,
    lat: Range,
}

/// Spreads the 32 bits of `v` to the even bit positions.
fn spread(v: u32) -> u64 {
    let mut x = v as u64;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `v`, packed.
fn squash(v: u64) -> u32 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) as u32
}

fn deg_rad(d: f64) -> f64 {
    d * D_R
}

fn rad_deg(r: f64) -> f64 {
    r / D_R
}

/// Latitude in even bits, longitude in odd bits; None outside the ranges.
fn encode(long_r: Range, lat_r: Range, long: f64, lat: f64, step: u8) -> Option<Hash> {
    if !(LONG_MIN..=LONG_MAX).contains(&long) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if lat < lat_r.min || lat > lat_r.max || long < long_r.min || long > long_r.max {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_off = (lat - lat_r.min) / (lat_r.max - lat_r.min) * scale;
    let long_off = (long - long_r.min) / (long_r.max - long_r.min) * scale;
    // As C converts a double to uint32_t: truncated.
    let bits = spread(lat_off as u32) | (spread(long_off as u32) << 1);
    Some(Hash { bits, step })
}

fn decode(long_r: Range, lat_r: Range, h: Hash) -> Area {
    let lat_i = squash(h.bits);
    let long_i = squash(h.bits >> 1);
    let div = (1u64 << h.step) as f64;
    let (lat_s, long_s) = (lat_r.max - lat_r.min, long_r.max - long_r.min);
    Area {
        lat: Range {
            min: lat_r.min + (lat_i as f64 * 1.0 / div) * lat_s,
            max: lat_r.min + (lat_i.wrapping_add(1) as f64 * 1.0 / div) * lat_s,
        },
        long: Range {
            min: long_r.min + (long_i as f64 * 1.0 / div) * long_s,
            max: long_r.min + (long_i.wrapping_add(1) as f64 * 1.0 / div) * long_s,
        },
    }
}

/// C's `(uint64_t)` of a double as x86-64 computes it, which Redis applies
/// to any score, not only ones GEOADD wrote: negative values wrap, values
/// out of range give 2^63 or 0. Rust's `as` would saturate instead.
fn c_u64(x: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    const INDEFINITE: u64 = 0x8000_0000_0000_0000;
    let signed = |v: f64| {
        if v.is_nan() || !(-TWO63..TWO63).contains(&v) {
            INDEFINITE
        } else {
            (v as i64) as u64
        }
    };
    if x < TWO63 {
        signed(x)
    } else {
        signed(x - TWO63) ^ INDEFINITE
    }
}

/// A score's position: the centre of its cell.
fn position(score: f64) -> (f64, f64) {
    let a = decode(
        WGS84_LONG,
        WGS84_LAT,
        Hash {
            bits: c_u64(score),
            step: STEP_MAX,
        },
    );
    let long = ((a.long.min + a.long.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (long, lat)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Haversine distance in meters, as Redis computes it.
fn distance(long1: f64, lat1: f64, long2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (deg_rad(long1), deg_rad(long2));
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (deg_rad(lat1), deg_rad(lat2));
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS * a.sqrt().asin()
}

/// Moves a cell one step east or west (`long`, the odd bits) or north or
/// south (the even bits), in the direction of `d`'s sign.
fn step_cell(h: &mut Hash, d: i8, long: bool) {
    const ODD: u64 = 0xaaaa_aaaa_aaaa_aaaa;
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let (moving, kept) = if long { (ODD, EVEN) } else { (EVEN, ODD) };
    let shift = 64 - h.step as u32 * 2;
    let v = h.bits & moving;
    // The other axis's bits, all set: a carry runs through them.
    let zz = kept >> shift;
    let v = if d > 0 {
        v.wrapping_add(zz + 1)
    } else {
        (v | zz).wrapping_sub(zz + 1)
    };
    h.bits = (v & (moving >> shift)) | (h.bits & kept);
}

fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
    let mut n = h;
    if dx != 0 {
        step_cell(&mut n, dx, true);
    }
    if dy != 0 {
        step_cell(&mut n, dy, false);
    }
    n
}

/// What a search looks in, and from where.
#[derive(Clone, Copy)]
enum Shape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

struct Search {
    long: f64,
    lat: f64,
    shape: Shape,
    /// Meters per unit of the shape's figures.
    unit: f64,
}

impl Search {
    /// The distance to a point, if it is inside the shape.
    fn within(&self, long: f64, lat: f64) -> Option<f64> {
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.long, self.lat, long, lat);
                (d <= r * self.unit).then_some(d)
            }
            Shape::Box { width, height } => {
                if lat_distance(lat, self.lat) > height * self.unit / 2.0 {
                    return None;
                }
                if distance(long, lat, self.long, lat) > width * self.unit / 2.0 {
                    return None;
                }
                Some(distance(self.long, self.lat, long, lat))
            }
        }
    }

    /// [min long, min lat, max long, max lat] around the centre.
    fn bounds(&self) -> [f64; 4] {
        let (h, w) = match self.shape {
            Shape::Radius(r) => (r * self.unit, r * self.unit),
            Shape::Box { width, height } => (height / 2.0 * self.unit, width / 2.0 * self.unit),
        };
        let lat_delta = rad_deg(h / EARTH_RADIUS);
        let top = rad_deg(w / EARTH_RADIUS / deg_rad(self.lat + lat_delta).cos());
        let bottom = rad_deg(w / EARTH_RADIUS / deg_rad(self.lat - lat_delta).cos());
        let d = if self.lat < 0.0 { bottom } else { top };
        [
            self.long - d,
            self.lat - lat_delta,
            self.long + d,
            self.lat + lat_delta,
        ]
    }

    /// The cell holding the centre and its eight neighbours, in Redis's
    /// order, those that cannot hold a match zeroed.
    fn cells(&self) -> [Hash; 9] {
        let radius = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        } * self.unit;
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let mut step = steps_for(radius, self.lat);
        let around = |step: u8| {
            let h = encode(WGS84_LONG, WGS84_LAT, self.long, self.lat, step)
                .unwrap_or(Hash { bits: 0, step });
            let n = [
                h,
                moved(h, 0, 1),
                moved(h, 0, -1),
                moved(h, 1, 0),
                moved(h, -1, 0),
                moved(h, 1, 1),
                moved(h, -1, 1),
                moved(h, 1, -1),
                moved(h, -1, -1),
            ];
            (n, decode(WGS84_LONG, WGS84_LAT, h))
        };
        let (mut n, mut area) = around(step);
        // Near a cell's edge the step may be too fine for the neighbours
        // to cover the whole shape: one coarser then.
        let side = |i: usize| decode(WGS84_LONG, WGS84_LAT, n[i]);
        let coarser = side(1).lat.max < max_lat
            || side(2).lat.min > min_lat
            || side(3).long.max < max_lon
            || side(4).long.min > min_lon;
        if step > 1 && coarser {
            step -= 1;
            (n, area) = around(step);
        }
        if step >= 2 {
            let mut zero = |cells: [usize; 3]| cells.iter().for_each(|&i| n[i] = Hash::ZERO);
            if area.lat.min < min_lat {
                zero([2, 8, 7]);
            }
            if area.lat.max > max_lat {
                zero([1, 5, 6]);
            }
            if area.long.min < min_lon {
                zero([4, 8, 6]);
            }
            if area.long.max > max_lon {
                zero([3, 7, 5]);
            }
        }
        n
    }
}

fn steps_for(mut range: f64, lat: f64) -> u8 {
    if range == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// A member found by a search.
struct Found {
    member: Bytes,
    dist: f64,
    score: f64,
    long: f64,
    lat: f64,
}

/// Every member within the search, cell after cell in score order; at most
/// `limit` (0: all).
fn search(z: &ZSet, s: &Search, limit: usize) -> Vec<Found> {
    let cells = s.cells();
    let mut out = Vec::new();
    let mut last = 0;
    for (i, cell) in cells.iter().enumerate() {
        if *cell == Hash::ZERO {
            continue;
        }
        // Very large radiuses make neighbours repeat.
        if last != 0 && *cell == cells[last] {
            continue;
        }
        if limit != 0 && out.len() >= limit {
            break;
        }
        let shift = 52 - cell.step as u32 * 2;
        let min = (cell.bits << shift) as f64;
        let max = ((cell.bits + 1) << shift) as f64;
        let from = z.count_before(|sc, _| sc < min);
        let to = z.count_before(|sc, _| sc < max);
        for (member, score) in z.range(from, to) {
            let (long, lat) = position(score);
            if let Some(dist) = s.within(long, lat) {
                out.push(Found {
                    member,
                    dist,
                    score,
                    long,
                    lat,
                });
                if limit != 0 && out.len() >= limit {
                    break;
                }
            }
        }
        last = i;
    }
    out
}

/// `%.17Lf` with trailing zeros removed, as Redis prints coordinates.
fn human(v: f64) -> Reply {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        s = "0".into();
    }
    Reply::bulk(Bytes::from(s))
}

fn dist_reply(d: f64) -> Reply {
    Reply::bulk(Bytes::from(format!("{d:.4}")))
}

fn unit(a: &[u8]) -> CmdResult<f64> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .iter()
        .find(|(n, _)| is(a, n))
        .map(|(_, m)| *m)
        .ok_or_else(|| CmdError::msg("ERR unsupported unit provided. please use M, KM, FT, MI"))
}

fn float_or(a: &[u8], msg: &str) -> CmdResult<f64> {
    parse_f64(a).ok_or_else(|| CmdError::msg(msg))
}

fn long_lat(a: &[Bytes]) -> CmdResult<(f64, f64)> {
    let (long, lat) = (float_arg(&a[0])?, float_arg(&a[1])?);
    if !(LONG_MIN..=LONG_MAX).contains(&long) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(CmdError::msg(format!(
            "ERR invalid longitude,latitude pair {long:.6},{lat:.6}"
        )));
    }
    Ok((long, lat))
}

pub fn geoadd(s: &Store, a: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "NX") {
            nx = true;
        } else if is(&a[i], "XX") {
            xx = true;
        } else if is(&a[i], "CH") {
            ch = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.len() % 3 != 0 || (nx && xx) {
        return Err(CmdError::Syntax);
    }
    if rest.is_empty() {
        return Err(CmdError::Syntax);
    }
    let mut points = Vec::with_capacity(rest.len() / 3);
    for t in rest.chunks(3) {
        let (long, lat) = long_lat(t)?;
        let h = encode(WGS84_LONG, WGS84_LAT, long, lat, STEP_MAX).unwrap_or_default();
        points.push((own(&t[2]), h.bits as f64));
    }
    let n = modify::<ZSet, _>(
        s,
        &a[1],
        !xx,
        |z| {
            let mut n = 0;
            for (member, score) in points {
                match z.score(&member) {
                    Some(_) if nx => {}
                    Some(old) => {
                        if old != score {
                            z.insert(member, score);
                            n += ch as i64;
                        }
                    }
                    None if xx => {}
                    None => {
                        z.insert(member, score);
                        n += 1;
                    }
                }
            }
            Ok(n)
        },
        0,
    )?;
    Ok(Reply::Int(n))
}

pub fn geopos(s: &Store, a: &[Bytes]) -> CmdResult {
    read::<ZSet, _>(s, &a[1], |z| {
        Reply::Array(
            a[2..]
                .iter()
                .map(|m| match z.and_then(|z| z.score(m)) {
                    Some(score) => {
                        let (long, lat) = position(score);
                        Reply::Array(vec![human(long), human(lat)])
                    }
                    None => Reply::NilArray,
                })
                .collect(),
        )
    })
}

pub fn geodist(s: &Store, a: &[Bytes]) -> CmdResult {
    let to_meter = match a.len() {
        4 => 1.0,
        5 => unit(&a[4])?,
        _ => return Err(CmdError::Syntax),
    };
    read::<ZSet, _>(s, &a[1], |z| {
        let Some(z) = z else {
            return Reply::Nil;
        };
        match (z.score(&a[2]), z.score(&a[3])) {
            (Some(s1), Some(s2)) => {
                let ((x1, y1), (x2, y2)) = (position(s1), position(s2));
                dist_reply(distance(x1, y1, x2, y2) / to_meter)
            }
            _ => Reply::Nil,
        }
    })
}

pub fn geohash(s: &Store, a: &[Bytes]) -> CmdResult {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let world_lat = Range {
        min: -90.0,
        max: 90.0,
    };
    read::<ZSet, _>(s, &a[1], |z| {
        Reply::Array(
            a[2..]
                .iter()
                .map(|m| {
                    let Some(score) = z.and_then(|z| z.score(m)) else {
                        return Reply::Nil;
                    };
                    let (long, lat) = position(score);
                    let bits = encode(WGS84_LONG, world_lat, long, lat, STEP_MAX)
                        .unwrap_or_default()
                        .bits;
                    let text: Vec<u8> = (0..11)
                        .map(|i| {
                            let idx = if i == 10 {
                                0
                            } else {
                                (bits >> (52 - (i + 1) * 5)) & 0x1f
                            };
                            ALPHABET[idx as usize]
                        })
                        .collect();
                    Reply::bulk(Bytes::from(text))
                })
                .collect(),
        )
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// Which command is searching: they differ in where the centre and shape
/// are given and in what they may store.
#[derive(PartialEq, Clone, Copy)]
enum Form {
    Search,
    SearchStore,
    /// GEORADIUS (lon lat radius unit); `true` for the _RO form.
    Radius(bool),
    /// GEORADIUSBYMEMBER (member radius unit); `true` for the _RO form.
    ByMember(bool),
}

fn radius_arg(a: &[Bytes]) -> CmdResult<(Shape, f64)> {
    let r = float_or(&a[0], "ERR need numeric radius")?;
    if r < 0.0 {
        return Err(CmdError::msg("ERR radius cannot be negative"));
    }
    Ok((Shape::Radius(r), unit(&a[1])?))
}

fn search_generic(s: &Store, a: &[Bytes], form: Form) -> CmdResult {
    let name = String::from_utf8_lossy(&a[0]).into_owned();
    let src = if form == Form::SearchStore {
        &a[2]
    } else {
        &a[1]
    };
    let z_exists = read::<ZSet, _>(s, src, |z| z.is_some())?;
    let member_position = |m: &[u8]| -> CmdResult<(f64, f64)> {
        read::<ZSet, _>(s, src, |z| z.and_then(|z| z.score(m)))?
            .map(position)
            .ok_or_else(|| CmdError::msg("ERR could not decode requested zset member"))
    };
    let mut center: Option<(f64, f64)> = None;
    let mut shape: Option<(Shape, f64)> = None;
    let base = match form {
        Form::Search => 2,
        Form::SearchStore => 3,
        Form::Radius(_) => {
            center = Some(long_lat(&a[2..4])?);
            shape = Some(radius_arg(&a[4..6])?);
            6
        }
        Form::ByMember(_) => {
            // A missing key answers empty, not that the member is missing
            // or the radius bad: Redis reads neither then.
            if z_exists {
                center = Some(member_position(&a[2])?);
                shape = Some(radius_arg(&a[3..5])?);
            }
            5
        }
    };
    let geosearch = matches!(form, Form::Search | Form::SearchStore);
    let may_store = matches!(form, Form::Radius(false) | Form::ByMember(false));
    let mut store_key = (form == Form::SearchStore).then(|| a[1].clone());
    let (mut withdist, mut withhash, mut withcoord, mut any, mut storedist) =
        (false, false, false, false, false);
    let mut sort = Sort::None;
    let mut count: usize = 0;
    let (mut frommember, mut fromloc) = (false, false);
    let rest = &a[base..];
    let mut i = 0;
    while i < rest.len() {
        let o = &rest[i];
        let more = rest.len() - i - 1;
        if is(o, "WITHDIST") {
            withdist = true;
        } else if is(o, "WITHHASH") {
            withhash = true;
        } else if is(o, "WITHCOORD") {
            withcoord = true;
        } else if is(o, "ANY") {
            any = true;
        } else if is(o, "ASC") {
            sort = Sort::Asc;
        } else if is(o, "DESC") {
            sort = Sort::Desc;
        } else if is(o, "COUNT") && more >= 1 {
            let n = int_arg(&rest[i + 1])?;
            if n <= 0 {
                return Err(CmdError::msg("ERR COUNT must be > 0"));
            }
            count = n as usize;
            i += 1;
        } else if (is(o, "STORE") || is(o, "STOREDIST")) && more >= 1 && may_store {
            store_key = Some(rest[i + 1].clone());
            storedist = is(o, "STOREDIST");
            i += 1;
        } else if is(o, "STOREDIST") && form == Form::SearchStore {
            storedist = true;
        } else if is(o, "FROMMEMBER") && more >= 1 && geosearch && !fromloc {
            if z_exists {
                center = Some(member_position(&rest[i + 1])?);
            }
            frommember = true;
            i += 1;
        } else if is(o, "FROMLONLAT") && more >= 2 && geosearch && !frommember {
            center = Some(long_lat(&rest[i + 1..i + 3])?);
            fromloc = true;
            i += 2;
        } else if is(o, "BYRADIUS")
            && more >= 2
            && geosearch
            && !matches!(shape, Some((Shape::Box { .. }, _)))
        {
            shape = Some(radius_arg(&rest[i + 1..i + 3])?);
            i += 2;
        } else if is(o, "BYBOX")
            && more >= 3
            && geosearch
            && !matches!(shape, Some((Shape::Radius(_), _)))
        {
            let width = float_or(&rest[i + 1], "ERR need numeric width")?;
            let height = float_or(&rest[i + 2], "ERR need numeric height")?;
            if height < 0.0 || width < 0.0 {
                return Err(CmdError::msg("ERR height or width cannot be negative"));
            }
            shape = Some((Shape::Box { width, height }, unit(&rest[i + 3])?));
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let store_key = store_key.as_ref();
    if store_key.is_some() && (withdist || withhash || withcoord) {
        return Err(CmdError::msg(if form == Form::SearchStore {
            "ERR GEOSEARCHSTORE is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        } else {
            "ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        }));
    }
    if geosearch && !(frommember || fromloc) {
        return Err(CmdError::msg(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if geosearch && shape.is_none() {
        return Err(CmdError::msg(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if any && count == 0 {
        return Err(CmdError::msg(
            "ERR the ANY argument requires COUNT argument",
        ));
    }
    let (Some((long, lat)), Some((shape, unit)), true) = (center, shape, z_exists) else {
        return Ok(match store_key {
            Some(dst) => {
                s.write(dst, |slot| *slot = None);
                Reply::Int(0)
            }
            None => Reply::Array(Vec::new()),
        });
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let search_for = Search {
        long,
        lat,
        shape,
        unit,
    };
    let mut found = read::<ZSet, _>(s, src, |z| {
        z.map(|z| search(z, &search_for, if any { count } else { 0 }))
            .unwrap_or_default()
    })?;
    match sort {
        Sort::Asc => found.sort_by(|x, y| x.dist.total_cmp(&y.dist)),
        Sort::Desc => found.sort_by(|x, y| y.dist.total_cmp(&x.dist)),
        Sort::None => {}
    }
    if count != 0 {
        found.truncate(count);
    }
    if let Some(dst) = store_key {
        let n = found.len();
        let mut z = ZSet::default();
        for f in found {
            let score = if storedist { f.dist / unit } else { f.score };
            z.insert(f.member, score);
        }
        store(s, dst, z, Value::ZSet);
        return Ok(Reply::Int(n as i64));
    }
    let options = withdist as usize + withhash as usize + withcoord as usize;
    Ok(Reply::Array(
        found
            .into_iter()
            .map(|f| {
                if options == 0 {
                    return Reply::Bulk(f.member);
                }
                let mut item = vec![Reply::Bulk(f.member)];
                if withdist {
                    item.push(dist_reply(f.dist / unit));
                }
                if withhash {
                    item.push(Reply::Int(f.score as i64));
                }
                if withcoord {
                    item.push(Reply::Array(vec![human(f.long), human(f.lat)]));
                }
                Reply::Array(item)
            })
            .collect(),
    ))
}

pub fn geosearch(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::Search)
}

pub fn geosearchstore(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::SearchStore)
}

pub fn georadius(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::Radius(false))
}

pub fn georadius_ro(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::Radius(true))
}

pub fn georadiusbymember(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::ByMember(false))
}

pub fn georadiusbymember_ro(s: &Store, a: &[Bytes]) -> CmdResult {
    search_generic(s, a, Form::ByMember(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_convert_as_c_converts_them() {
        assert_eq!(c_u64(1.5), 1);
        assert_eq!(c_u64(-1.0), u64::MAX);
        assert_eq!(c_u64(-1e30), 0x8000_0000_0000_0000);
        assert_eq!(c_u64(1e19), 10_000_000_000_000_000_000);
        assert_eq!(c_u64(1e30), 0);
        assert_eq!(c_u64(f64::NAN), 0);
    }

    #[test]
    fn bits_interleave_and_come_apart() {
        for v in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(squash(spread(v)), v);
            assert_eq!(squash(spread(v) << 1 >> 1), v);
        }
        let h = encode(WGS84_LONG, WGS84_LAT, 13.361389, 38.115556, STEP_MAX).unwrap();
        // Redis stores Palermo (13.361389 38.115556) with this score.
        assert_eq!(h.bits, 3479099956230698);
    }
}
