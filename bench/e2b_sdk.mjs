#!/usr/bin/env node
// The official E2B SDK end to end against warmbox (issue "The E2B API"):
// Sandbox.create(), commands.run('true'), files.write + files.read of 1 MiB,
// kill(), ROUNDS rounds (200), p50 and p99 of each, next to E2B's published
// figures (about 150 ms to start a sandbox; 0.44 s median time to interactive
// in third-party tests). The ns driver; root.
//
// Usage: bench/e2b_sdk.mjs BUILD_DIR   (make bench runs it)
// Output: BUILD_DIR/bench-e2b.json and a table on stdout.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const build = path.resolve(process.argv[2] || path.join(HERE, '..', 'build'))
process.env.WARMBOX_BUILD_DIR = build
const { Daemon, skipReason } = await import(pathToFileURL(path.join(HERE, '..', 'tests', 'e2b', 'daemon.mjs')))
const require = createRequire(path.join(HERE, '..', 'tests', 'e2b', 'package.json'))
const { Sandbox } = await import(pathToFileURL(require.resolve('e2b')))

const ROUNDS = Number(process.env.ROUNDS || 200)
// E2B's published figures: its docs' sandbox start (~150 ms) and a
// third-party time-to-interactive median (0.44 s).
const E2B_START_MS = 150
const E2B_TTI_MS = 440

const why = skipReason()
if (why) {
  console.error(`e2b_sdk: skipped: ${why}`)
  process.exit(0)
}

function pct (xs, p) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]
}

// CPU time (ms) a process has used: utime + stime from /proc/PID/stat.
function cpuMs (pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) * 1000 / 100
}

// Where the time of commands.run('true') goes, in one kept sandbox: the SDK
// client's own CPU (process.cpuUsage), the daemon's and the agents' CPU, and
// what `bash -l -c true` (the SDK's wrapping of every command) costs inside
// the sandbox by itself.
async function runBreakdown (s, daemonPid) {
  const N = Math.max(50, Math.min(ROUNDS, 200))
  for (let i = 0; i < 5; i++) await s.commands.run('true')
  const agents = execFileSync('pgrep', ['-x', 'warmbox-agent'], { encoding: 'utf8' }).trim().split('\n')
  const agentCpu = () => agents.reduce((sum, p) => { try { return sum + cpuMs(p) } catch { return sum } }, 0)
  const a0 = agentCpu(); const d0 = cpuMs(daemonPid); const c0 = process.cpuUsage()
  const wall = []
  for (let i = 0; i < N; i++) {
    const t = performance.now()
    await s.commands.run('true')
    wall.push(performance.now() - t)
  }
  const c = process.cpuUsage(c0)
  const out = {
    runs: N,
    wall_p50_ms: pct(wall, 0.5),
    client_cpu_ms: (c.user + c.system) / 1000 / N,
    daemon_cpu_ms: (cpuMs(daemonPid) - d0) / N,
    agent_cpu_ms: (agentCpu() - a0) / N
  }
  const loop = await s.commands.run('s=$(date +%s%N); for i in $(seq 100); do bash -l -c true; done; e=$(date +%s%N); echo $(( (e - s) / 100000 ))')
  out.bash_login_ms = Number(loop.stdout.trim()) / 1000
  return out
}

const d = await new Daemon({ args: ['--size', '2', '--max', '8'] }).start()
const opts = d.opts
const times = { create: [], run: [], write: [], read: [], kill: [], total: [] }
const blob = new Uint8Array(1 << 20).map((_, i) => i & 0xff)
let breakdown = null
try {
  // One round first, unmeasured: the base pool is made on its first use.
  await (await Sandbox.create({ ...opts })).kill()
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now()
    const s = await Sandbox.create({ ...opts })
    const t1 = performance.now()
    await s.commands.run('true')
    const t2 = performance.now()
    await s.files.write('/tmp/blob', blob.buffer)
    const t3 = performance.now()
    const back = await s.files.read('/tmp/blob', { format: 'bytes' })
    const t4 = performance.now()
    if (back.length !== blob.length) throw new Error(`read ${back.length} bytes, wrote ${blob.length}`)
    await s.kill()
    const t5 = performance.now()
    times.create.push(t1 - t0)
    times.run.push(t2 - t1)
    times.write.push(t3 - t2)
    times.read.push(t4 - t3)
    times.kill.push(t5 - t4)
    times.total.push(t5 - t0)
  }
  const kept = await Sandbox.create({ ...opts })
  breakdown = await runBreakdown(kept, d.proc.pid)
  await kept.kill()
} finally {
  const problems = await d.stop()
  if (problems.length) console.error(problems.join('\n'))
}

const rows = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { p50: pct(v, 0.5), p99: pct(v, 0.99) }]))
const out = {
  rounds: ROUNDS,
  ms: rows,
  run_breakdown: breakdown,
  e2b_published: { start_ms: E2B_START_MS, time_to_interactive_ms: E2B_TTI_MS },
  ratios: {
    create_vs_e2b_start: rows.create.p50 / E2B_START_MS,
    create_plus_run_vs_e2b_tti: (rows.create.p50 + rows.run.p50) / E2B_TTI_MS
  }
}
fs.writeFileSync(path.join(build, 'bench-e2b.json'), JSON.stringify(out, null, 2) + '\n')
console.log(`E2B SDK against warmbox (ns), ${ROUNDS} rounds, ms:`)
for (const [k, v] of Object.entries(rows)) console.log(`  ${k.padEnd(22)} p50 ${v.p50.toFixed(2).padStart(8)}   p99 ${v.p99.toFixed(2).padStart(8)}`)
console.log(`  Sandbox.create() p50 is ${out.ratios.create_vs_e2b_start.toFixed(3)}x E2B's published start (${E2B_START_MS} ms); target <= 10 ms`)
console.log(`  create + run('true') p50 is ${out.ratios.create_plus_run_vs_e2b_tti.toFixed(3)}x E2B's time to interactive (${E2B_TTI_MS} ms); run target <= 5 ms`)
const b = breakdown
console.log(`  run('true') in one kept sandbox, ${b.runs} runs: wall p50 ${b.wall_p50_ms.toFixed(2)} ms; CPU per run: ` +
  `SDK client ${b.client_cpu_ms.toFixed(2)}, daemon ${b.daemon_cpu_ms.toFixed(2)}, agent ${b.agent_cpu_ms.toFixed(2)} ms; ` +
  `bash -l -c true alone ${b.bash_login_ms.toFixed(2)} ms`)
