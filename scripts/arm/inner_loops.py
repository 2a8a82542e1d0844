#!/usr/bin/env python3
"""Multiply-adds per instruction of each AArch64 kernel's inner loops, from the disassembly.

Usage: inner_loops.py BINARY [FUNCTION_SUBSTRING ...]

For every function whose demangled name contains one of the substrings, each loop (a backward
branch within the function) that holds a multiply-add instruction is printed with its length
in instructions, its multiply-adds, and their ratio. A multiply-add here is one lane-product
added into an accumulator: SMLAL/SMLAL2 .4s do 4, SDOT .4s 16, USMMLA/SMMLA 32, FMLA .4s 4
(.2s 2, scalar FMADD 1). Emulated time on qemu means nothing, so this is the speed figure the
README gives for ARM.
"""
import re
import subprocess
import sys

MACS = {
    ("smlal", ".4s"): 4, ("smlal2", ".4s"): 4,
    ("sdot", ".4s"): 16, ("usdot", ".4s"): 16,
    ("usmmla", ".4s"): 32, ("smmla", ".4s"): 32,
    ("fmla", ".4s"): 4, ("fmla", ".2s"): 2,
    ("fmadd", ""): 1, ("fmsub", ""): 1,
}


def macs(mnemonic, operands):
    for (m, shape), n in MACS.items():
        if mnemonic == m and (not shape or operands.split(",")[0].endswith(shape)):
            return n
    return 0


def functions(binary):
    out = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", "-C", binary],
        check=True, capture_output=True, text=True).stdout
    name, body = None, []
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            if name:
                yield name, body
            name, body = head.group(1), []
            continue
        ins = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if ins and name:
            body.append((int(ins.group(1), 16), ins.group(2), ins.group(3)))
    if name:
        yield name, body


def main():
    binary, wanted = sys.argv[1], sys.argv[2:]
    for name, body in functions(binary):
        if not any(w in name for w in wanted):
            continue
        index = {addr: i for i, (addr, _, _) in enumerate(body)}
        loops = []
        for i, (addr, mn, ops) in enumerate(body):
            if not (mn.startswith("b.") or mn in ("b", "cbnz", "cbz", "tbnz", "tbz")):
                continue
            target = re.search(r"\b([0-9a-f]+) <", ops)
            if not target:
                continue
            t = int(target.group(1), 16)
            if t <= addr and t in index:
                loop = body[index[t]:i + 1]
                m = sum(macs(mn_, ops_) for _, mn_, ops_ in loop)
                if m:
                    loops.append((len(loop), m, loop))
        # Innermost first: a loop that contains no other loop with multiply-adds.
        loops.sort(key=lambda l: l[0])
        seen = []
        print(name)
        for n, m, loop in loops:
            if any(loop[0][0] <= s[0] and s[1] <= loop[-1][0] for s in seen):
                continue
            seen.append((loop[0][0], loop[-1][0]))
            kinds = {}
            for _, mn, ops in loop:
                if macs(mn, ops):
                    kinds[mn] = kinds.get(mn, 0) + 1
            print(f"  loop at {loop[0][0]:#x}: {n} instructions, {m} multiply-adds "
                  f"({m / n:.1f} per instruction; {', '.join(f'{v} {k}' for k, v in kinds.items())})")


if __name__ == "__main__":
    main()
