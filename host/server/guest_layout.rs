// How a Rust guest's linear memory is laid out, and the stack size that
// packs it: shared by the guest builds of this workspace (`guest_build.rs`)
// and `wsbox build` (`host/src/scaffold/toolchain.rs`), which include it.
// Standard library only (build scripts include it).

/// Where a guest's globals lie in its linear memory, from wasm-ld's link map.
#[derive(Debug)]
struct GuestLayout {
    /// Start of the read-only and initialised data (`.rodata`, `.data`):
    /// with `--stack-first` (Rust's default for wasm) also the stack's size.
    data_start: u64,
    /// End of the initialised data: what the memory image holds.
    data_end: u64,
    /// Zero-initialised data (`.bss`) after it; the heap starts at its end.
    bss: u64,
}

const OS_PAGE: u64 = 4096;
const WASM_PAGE: u64 = 65536;
/// Rust's default stack for wasm, which a packed layout never shrinks.
const DEFAULT_STACK: u64 = 1 << 20;
/// The least heap a packed layout leaves in its last page.
const MIN_PACKED_HEAP: u64 = 1024;

impl GuestLayout {
    fn heap_base(&self) -> u64 {
        (self.data_end + self.bss).next_multiple_of(16)
    }

    /// The initial memory's end: wasi-libc's malloc takes everything from
    /// the heap base up to here as its first heap, and writes its footer
    /// just below it.
    fn memory_end(&self) -> u64 {
        self.heap_base().next_multiple_of(WASM_PAGE)
    }

    /// The initialised data ends in the initial memory's last OS page and
    /// the heap has room there.
    fn is_packed(&self) -> bool {
        let end = self.memory_end();
        self.data_end > end - OS_PAGE && self.heap_base() + MIN_PACKED_HEAP <= end
    }
}

/// The stack size that packs a guest's memory into as few OS pages as an
/// idle instance can touch.
///
/// Linked with the default 1 MiB stack first, an idle instance of the echo
/// touched four pages of its memory: the stack's top, the memory image's
/// read-only and its written page, and the initial memory's last page,
/// where wasi-libc's malloc writes the footer of its first heap (the heap
/// starts after `.bss` and runs to the end of the initial memory, a 64 KiB
/// boundary, ~58 KiB further). A stack sized so that the initialised data
/// ends in that last page puts the stack's top, the data, `.bss`, the
/// first heap bytes and the footer on three pages: one fewer per instance
/// (`bench/ANALYSIS.md`). The stack only grows (never below 1 MiB), and a
/// heap that outgrows the last page continues, contiguously, into the
/// memory malloc grows. `None` when `.bss` leaves no room for a heap there.
fn packed_stack_size(layout: &GuestLayout) -> Option<u64> {
    let data = layout.data_end - layout.data_start;
    // Room for the alignment the sections may add (wasm-ld aligns each).
    let slack = 64;
    if layout.bss + MIN_PACKED_HEAP + slack + 16 > OS_PAGE {
        return None;
    }
    let end = (DEFAULT_STACK + data + OS_PAGE).next_multiple_of(WASM_PAGE);
    // The data ends just inside the last page: the heap gets the rest of it.
    let stack = (end - OS_PAGE + slack - data).next_multiple_of(64);
    Some(stack)
}

/// Reads the memory sections' addresses from a wasm-ld link map (`-Map`):
/// lines of `address  offset  size .name`.
fn read_link_map(path: &std::path::Path) -> Result<GuestLayout, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut start = u64::MAX;
    let mut data_end = 0;
    let mut bss_end = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [address, _, size, name] = fields[..] else { continue };
        // A section's name follows its size after one space; the symbols
        // in it (some also named `.L...`) are indented further.
        if !name.starts_with('.') || !line.ends_with(&format!("{size} {name}")) {
            continue;
        }
        let (Ok(address), Ok(size)) = (u64::from_str_radix(address, 16), u64::from_str_radix(size, 16)) else {
            continue;
        };
        start = start.min(address);
        if name == ".bss" {
            bss_end = bss_end.max(address + size);
        } else {
            data_end = data_end.max(address + size);
        }
    }
    if start == u64::MAX || data_end == 0 {
        return Err("no memory sections (.rodata, .data, .bss) in the map".to_string());
    }
    Ok(GuestLayout {
        data_start: start,
        data_end,
        bss: bss_end.saturating_sub(data_end),
    })
}


/// How [`link_packed`] went.
enum Packing {
    /// Linked with the packed layout, checked against the second map.
    Packed,
    /// The first link wrote no map that could be read (why).
    NoMap(String),
    /// `.bss` (this many bytes) leaves no room: the default layout is kept.
    NoRoom(u64),
    /// Linked with the packed stack size, but the data did not end where
    /// planned (the layout as linked, or why its map could not be read).
    NotAsPlanned(String),
}

/// Links a guest twice through `link` (which runs the build with extra
/// linker arguments): once with a link map written to `map`, then with the
/// stack size that map calls for ([`packed_stack_size`]). Only the guest
/// crate itself is linked again; its dependencies are built once.
fn link_packed<E>(map: &std::path::Path, mut link: impl FnMut(&[&str]) -> Result<(), E>) -> Result<Packing, E> {
    let map_arg = format!("-Map={}", map.display());
    link(&[&map_arg])?;
    let layout = match read_link_map(map) {
        Ok(layout) => layout,
        Err(e) => return Ok(Packing::NoMap(e)),
    };
    let Some(stack) = packed_stack_size(&layout) else {
        return Ok(Packing::NoRoom(layout.bss));
    };
    link(&[&format!("-zstack-size={stack}"), &map_arg])?;
    Ok(match read_link_map(map) {
        Ok(packed) if packed.is_packed() => Packing::Packed,
        Ok(packed) => Packing::NotAsPlanned(format!("{packed:?}")),
        Err(e) => Packing::NotAsPlanned(e),
    })
}
