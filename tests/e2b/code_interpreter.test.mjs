// The official E2B code interpreter SDK (@e2b/code-interpreter) against a
// real warmbox daemon: the code-interpreter-v1 template and warmbox's server
// inside it (src/interp/, docs/e2b.md "Code interpreter"), reached through
// the daemon's port proxy.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { NotFoundError, Sandbox, TimeoutError } from '@e2b/code-interpreter'

import { Daemon, eventually, skipReason } from './daemon.mjs'

const skip = skipReason()
const TEMPLATE = 'code-interpreter-v1'

// The server is a pre-boot service: a sandbox claimed from a warm pool has it
// listening already, but one the pool made for this very create (an empty
// pool) may be claimed within the server's start-up: wait until it answers.
async function ready (sbx) {
  assert.ok(await eventually(async () => {
    try { await sbx.listCodeContexts(); return true } catch { return false }
  }, 30_000), 'the code interpreter server never answered')
  return sbx
}

// A PNG: its signature, then the IHDR chunk with a non-zero size.
function assertPng (b64) {
  const png = Buffer.from(b64, 'base64')
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR')
  const width = png.readUInt32BE(16)
  const height = png.readUInt32BE(20)
  assert.ok(width > 0 && height > 0, `${width}x${height}`)
  return { width, height }
}

describe('E2B code interpreter', { skip: skip || false }, () => {
  let d, s

  before(async () => {
    d = await new Daemon({ templates: ['base', TEMPLATE], args: ['--warm', `${TEMPLATE}=2`] }).start()
    // The SDK's default template: no template argument.
    s = await ready(await Sandbox.create({ ...d.opts, timeoutMs: 600_000, envs: { WB_CREATE_ENV: 'from-create' } }))
  })
  after(async () => {
    if (!d) return
    if (s) await s.kill().catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
  })

  it('keeps variables between runs; the last expression is the text', async () => {
    const a = await s.runCode('x = 41\nprint("set")')
    assert.equal(a.error, undefined)
    assert.deepEqual(a.logs.stdout, ['set\n'])
    const b = await s.runCode('x + 1')
    assert.equal(b.text, '42')
    assert.equal(b.results.length, 1)
    assert.equal(b.results[0].isMainResult, true)
    assert.ok(b.executionCount > a.executionCount, `${a.executionCount} then ${b.executionCount}`)
  })

  it('streams print through onStdout before the execution ends', async () => {
    // The code waits for a file that the test writes only once the first
    // line has reached onStdout.
    const seen = []
    const code = 'import os, time\nprint("first", flush=True)\n' +
      'while not os.path.exists("/tmp/go"): time.sleep(0.01)\nprint("second")'
    const run = s.runCode(code, {
      onStdout: async m => {
        seen.push(m.line)
        if (m.line.includes('first')) await s.files.write('/tmp/go', 'go')
      }
    })
    const r = await run
    assert.equal(r.error, undefined)
    assert.deepEqual(seen.join(''), 'first\nsecond\n')
  })

  it('returns a matplotlib figure as a PNG', async () => {
    const r = await s.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()')
    assert.equal(r.error, undefined, r.error && r.error.traceback)
    const pngs = r.results.filter(x => x.png)
    assert.equal(pngs.length, 1, JSON.stringify(r.results.map(x => x.formats())))
    assert.equal(pngs[0].isMainResult, false)
    assertPng(pngs[0].png)
  })

  it('returns a DataFrame as HTML', async () => {
    const r = await s.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": ["x", "y"]})')
    assert.equal(r.error, undefined, r.error && r.error.traceback)
    assert.match(r.results[0].html, /<table/)
    assert.match(r.text, /a\s+b/)
  })

  it('1/0 is a ZeroDivisionError with a traceback', async () => {
    const errors = []
    const r = await s.runCode('1/0', { onError: e => errors.push(e) })
    assert.equal(r.error.name, 'ZeroDivisionError')
    assert.match(r.error.value, /division by zero/)
    assert.match(r.error.traceback, /ZeroDivisionError/)
    assert.equal(errors.length, 1)
  })

  it('contexts do not share variables; restart clears one; remove ends it', async () => {
    const a = await s.createCodeContext({ cwd: '/tmp' })
    const b = await s.createCodeContext()
    assert.equal(a.language, 'python')
    assert.equal(a.cwd, '/tmp')
    await s.runCode('v = "in a"', { context: a })
    assert.equal((await s.runCode('v', { context: a })).text, "'in a'")
    assert.equal((await s.runCode('import os; os.getcwd()', { context: a })).text, "'/tmp'")
    assert.equal((await s.runCode('v', { context: b })).error.name, 'NameError')
    const ids = (await s.listCodeContexts()).map(c => c.id)
    assert.ok(ids.includes(a.id) && ids.includes(b.id))

    await s.restartCodeContext(a)
    assert.equal((await s.runCode('v', { context: a })).error.name, 'NameError')

    await s.removeCodeContext(b)
    assert.ok(!(await s.listCodeContexts()).some(c => c.id === b.id))
    await assert.rejects(s.runCode('1', { context: b }), err => {
      assert.ok(err instanceof NotFoundError, String(err))
      assert.match(err.message, new RegExp(`Context ${b.id} not found`))
      return true
    })
  })

  it('env vars: per execution only; the sandbox\'s reach the kernel', async () => {
    const code = 'import os; os.environ.get("WB_ONE", "unset")'
    assert.equal((await s.runCode(code, { envs: { WB_ONE: 'once' } })).text, "'once'")
    assert.equal((await s.runCode(code)).text, "'unset'")
    assert.equal((await s.runCode('import os; os.environ["WB_CREATE_ENV"]')).text, "'from-create'")
    // An execution's var over a sandbox var: back to the sandbox's after.
    const over = 'import os; os.environ["WB_CREATE_ENV"]'
    assert.equal((await s.runCode(over, { envs: { WB_CREATE_ENV: 'x' } })).text, "'x'")
    assert.equal((await s.runCode(over)).text, "'from-create'")
  })

  it('timeoutMs interrupts a while True loop; the context keeps working', async () => {
    const ctx = await s.createCodeContext()
    await s.runCode('kept = 7', { context: ctx })
    const t0 = Date.now()
    await assert.rejects(s.runCode('while True: pass', { context: ctx, timeoutMs: 1_500 }), TimeoutError)
    assert.ok(Date.now() - t0 < 10_000)
    // The kernel was interrupted (not restarted): the next run starts at once
    // and the state is there.
    const r = await s.runCode('kept * 6', { context: ctx, timeoutMs: 20_000 })
    assert.equal(r.text, '42')
  })

  it('runs on one context queue; other contexts run meanwhile', async () => {
    const ctx = await s.createCodeContext()
    await s.runCode('order = []', { context: ctx })
    // The first holds the context until /tmp/release exists; the second
    // waits behind it; another context answers meanwhile.
    let started
    const running = new Promise(resolve => { started = resolve })
    const first = s.runCode('import os, time\nprint("in", flush=True)\n' +
      'while not os.path.exists("/tmp/release"): time.sleep(0.01)\norder.append(1)', { context: ctx, onStdout: () => started() })
    await running
    const second = s.runCode('order.append(2); order', { context: ctx })
    assert.equal((await s.runCode('"free"')).text, "'free'")
    await s.files.write('/tmp/release', '')
    await first
    assert.equal((await second).text, '[1, 2]')
  })

  it('JavaScript and bash contexts keep state', async () => {
    const js = await s.createCodeContext({ language: 'js' })
    assert.equal(js.language, 'javascript')
    await s.runCode('let a = 20; var b = 1', { context: js })
    const r = await s.runCode('console.log("hi"); a * 2 + b + 1', { context: js })
    assert.equal(r.text, '42')
    assert.deepEqual(r.logs.stdout, ['hi\n'])
    assert.equal((await s.runCode('null.x', { context: js })).error.name, 'TypeError')
    // The default javascript context, by language.
    await s.runCode('globalThis.q = 5', { language: 'javascript' })
    assert.equal((await s.runCode('q', { language: 'javascript' })).text, '5')

    const sh = await s.createCodeContext({ language: 'bash' })
    await s.runCode('B=5; cd /tmp', { context: sh })
    const o = await s.runCode('echo "$B $(pwd)"; echo err >&2', { context: sh })
    assert.deepEqual(o.logs.stdout, ['5 /tmp\n'])
    assert.deepEqual(o.logs.stderr, ['err\n'])
    assert.equal((await s.runCode('echo "[$E]"', { context: sh, envs: { E: 'e' } })).logs.stdout.join(''), '[e]\n')
    assert.equal((await s.runCode('echo "[$E]"', { context: sh })).logs.stdout.join(''), '[]\n')
    await assert.rejects(s.runCode('while true; do :; done', { context: sh, timeoutMs: 1_000 }), TimeoutError)
    assert.deepEqual((await s.runCode('echo $B', { context: sh })).logs.stdout, ['5\n'])
  })

  it('runs one after another on a kept tunnel; a killed sandbox closes it', async () => {
    // The daemon's port proxy keeps the client's connection and the tunnel
    // to the interpreter between runs (warmbox_port_tunnels_* in /metrics).
    const tunnels = async () => {
      const r = await fetch(`${d.url}/metrics`, { headers: { Authorization: `Bearer ${d.token}` } })
      const text = await r.text()
      const metric = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))[1])
      return {
        opened: metric('warmbox_port_tunnels_opened_total'),
        reused: metric('warmbox_port_tunnel_reuses_total'),
        idle: metric('warmbox_port_tunnels_idle')
      }
    }
    const idleBefore = (await tunnels()).idle
    const t = await ready(await Sandbox.create({ ...d.opts, timeoutMs: 120_000 }))
    const before = await tunnels()
    for (let i = 0; i < 5; i++) assert.equal((await t.runCode(`${i} + 1`)).text, String(i + 1))
    const after = await tunnels()
    assert.equal(after.opened - before.opened, 0, JSON.stringify({ before, after }))
    assert.ok(after.reused - before.reused >= 5, JSON.stringify({ before, after }))
    assert.equal(after.idle, idleBefore + 1, JSON.stringify({ idleBefore, after }))
    await t.kill()
    assert.ok(await eventually(async () => (await tunnels()).idle === idleBefore, 10_000),
      `the killed sandbox's tunnel stays open: ${JSON.stringify(await tunnels())}`)
  })

  it('10 sandboxes run code at once', async () => {
    const many = await Promise.all(Array.from({ length: 10 }, async (_, i) =>
      ready(await Sandbox.create({ ...d.opts, timeoutMs: 120_000 }))))
    try {
      const out = await Promise.all(many.map((sbx, i) => sbx.runCode(`n = ${i}\nn * n`)))
      assert.deepEqual(out.map(r => r.text), Array.from({ length: 10 }, (_, i) => String(i * i)))
      // Each has its own interpreter.
      const again = await Promise.all(many.map(sbx => sbx.runCode('n')))
      assert.deepEqual(again.map(r => r.text), Array.from({ length: 10 }, (_, i) => String(i)))
    } finally {
      await Promise.all(many.map(sbx => sbx.kill().catch(() => {})))
    }
  })
})
