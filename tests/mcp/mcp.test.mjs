// The official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned by
// package-lock.json) and the MCP Inspector's CLI against a real daemon, over
// both transports: stdio (`warmbox mcp --socket ...`) and Streamable HTTP
// (/mcp). docs/mcp.md.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { LATEST_PROTOCOL_VERSION, McpError } from '@modelcontextprotocol/sdk/types.js'
import { Daemon, WARMBOX, skipReason } from './mcp_daemon.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const INSPECTOR = path.join(HERE, 'node_modules', '.bin', 'mcp-inspector')
const TOOLS = ['run_code', 'run_command', 'create_sandbox', 'kill_sandbox', 'list_sandboxes',
  'read_file', 'write_file', 'list_files']

// A 1x1 red PNG, written by Python's standard library (the base image has no PIL).
const PNG_CODE = `
import struct, zlib
def chunk(t, d):
    c = struct.pack('>I', len(d)) + t + d
    return c + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 2, 0, 0, 0))
png += chunk(b'IDAT', zlib.compress(b'\\x00\\xff\\x00\\x00')) + chunk(b'IEND', b'')
open('/tmp/dot.png', 'wb').write(png)
print(len(png))
`

const skip = skipReason()

// Needs only the CLI: no daemon, no root.
test('warmbox mcp without a daemon answers each request with an error, never a hang',
  { skip: fs.existsSync(WARMBOX) ? false : `${WARMBOX} missing: build it first` }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-mcp-nodaemon-'))
    try {
      const input = [
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
        JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
        JSON.stringify({ jsonrpc: '2.0', id: 'two', method: 'tools/list' })
      ].join('\n') + '\n'
      const r = spawnSync(WARMBOX, ['mcp', '--socket', path.join(dir, 'none.sock')], { input, encoding: 'utf8', timeout: 30000 })
      assert.equal(r.status, 0, r.stderr)
      const replies = r.stdout.trim().split('\n').map(l => JSON.parse(l)).sort((a, b) => String(a.id).localeCompare(String(b.id)))
      assert.deepEqual(replies.map(m => m.id), [1, 'two'])
      for (const m of replies) {
        assert.equal(m.error.code, -32603)
        assert.match(m.error.message, /cannot reach the warmbox daemon/)
      }
      assert.match(r.stderr, /warmbox mcp: cannot reach/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
let daemon

function text (result) {
  return result.content.filter(c => c.type === 'text').map(c => c.text).join('\n')
}

const transports = {
  stdio: () => new StdioClientTransport({
    command: WARMBOX,
    args: ['mcp', '--socket', daemon.socket],
    env: { ...process.env },
    stderr: 'inherit'
  }),
  http: () => new StreamableHTTPClientTransport(new URL(`${daemon.url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${daemon.token}` } }
  })
}

describe('MCP', { skip: skip || false }, () => {
  before(async () => { daemon = await new Daemon().start() })
  after(async () => {
    if (!daemon) return
    const problems = await daemon.stop()
    assert.deepEqual(problems, [])
  })

  for (const [name, make] of Object.entries(transports)) {
    describe(`over ${name}`, () => {
      let client
      let transport
      before(async () => {
        client = new Client({ name: 'warmbox-test', version: '1.0.0' })
        transport = make()
        await client.connect(transport)
      })
      after(async () => { await client.close() })

      test('initialize negotiates the SDK\'s protocol version', () => {
        assert.equal(client.getServerVersion().name, 'warmbox')
        assert.ok(client.getServerCapabilities().tools)
        assert.match(client.getInstructions(), /create_sandbox/)
        if (name === 'http') {
          assert.equal(transport.protocolVersion, LATEST_PROTOCOL_VERSION)
          assert.match(transport.sessionId, /^[0-9a-f]{32}$/)
        }
      })

      test('ping and tools/list', async () => {
        await client.ping()
        const { tools } = await client.listTools()
        assert.deepEqual(tools.map(t => t.name).sort(), [...TOOLS].sort())
        for (const t of tools) {
          assert.equal(t.inputSchema.type, 'object', t.name)
          assert.ok(t.description.length > 40, t.name)
        }
      })

      test('run_code in a fresh sandbox, destroyed after', async () => {
        const before = (await client.callTool({ name: 'list_sandboxes', arguments: {} })).structuredContent.sandboxes.length
        const t0 = Date.now()
        const r = await client.callTool({
          name: 'run_code',
          arguments: { language: 'python', code: 'import sys; print(6*7); print("oops", file=sys.stderr); sys.exit(3)' }
        })
        assert.equal(r.isError, false, text(r))
        assert.equal(r.structuredContent.stdout, '42\n')
        assert.equal(r.structuredContent.stderr, 'oops\n')
        assert.equal(r.structuredContent.exit_code, 3)
        assert.match(text(r), /exit_code: 3/)
        console.log(`# ${name}: run_code (python) in a fresh sandbox, created and killed, in ${Date.now() - t0} ms`)
        const bash = await client.callTool({ name: 'run_code', arguments: { language: 'bash', code: 'echo $((1+2))' } })
        assert.equal(bash.structuredContent.stdout, '3\n')
        const now = (await client.callTool({ name: 'list_sandboxes', arguments: {} })).structuredContent.sandboxes.length
        assert.equal(now, before)
      })

      test('a sandbox across calls: create, write, run, list, read (an image), kill', async () => {
        const created = await client.callTool({ name: 'create_sandbox', arguments: { timeout_seconds: 600 } })
        assert.equal(created.isError, false, text(created))
        const id = created.structuredContent.sandbox_id
        assert.match(id, /^[0-9a-f]{32}$/)
        // Listed with its metadata, for the operator too.
        const listed = await client.callTool({ name: 'list_sandboxes', arguments: {} })
        const mine = listed.structuredContent.sandboxes.find(s => s.sandbox_id === id)
        assert.equal(mine.metadata.created_by, 'mcp')
        const ls = spawnSync(WARMBOX, ['sandbox', 'ls', '--json', '--socket', daemon.socket], { encoding: 'utf8' })
        assert.equal(JSON.parse(ls.stdout).find(s => s.id === id).metadata.created_by, 'mcp')

        const w = await client.callTool({ name: 'write_file', arguments: { sandbox_id: id, path: '/tmp/in.txt', content: 'héllo\n' } })
        assert.equal(w.isError, false, text(w))
        const cmd = await client.callTool({
          name: 'run_command',
          arguments: { sandbox_id: id, command: 'cat /tmp/in.txt | tr a-z A-Z; echo "$GREETING"; pwd', env: { GREETING: 'hi' }, cwd: '/tmp' }
        })
        assert.equal(cmd.isError, false, text(cmd))
        assert.equal(cmd.structuredContent.stdout, 'HéLLO\nhi\n/tmp\n')
        assert.equal(cmd.structuredContent.exit_code, 0)

        const png = await client.callTool({ name: 'run_code', arguments: { language: 'python', code: PNG_CODE, sandbox_id: id } })
        assert.equal(png.structuredContent.exit_code, 0, text(png))
        const files = await client.callTool({ name: 'list_files', arguments: { sandbox_id: id, path: '/tmp' } })
        const paths = files.structuredContent.entries.map(e => e.path)
        assert.ok(paths.includes('/tmp/in.txt') && paths.includes('/tmp/dot.png'), JSON.stringify(paths))

        const img = await client.callTool({ name: 'read_file', arguments: { sandbox_id: id, path: '/tmp/dot.png' } })
        assert.equal(img.isError, false, text(img))
        assert.equal(img.content[0].type, 'image')
        assert.equal(img.content[0].mimeType, 'image/png')
        assert.equal(Buffer.from(img.content[0].data, 'base64').subarray(1, 4).toString(), 'PNG')
        const txt = await client.callTool({ name: 'read_file', arguments: { sandbox_id: id, path: '/tmp/in.txt' } })
        assert.deepEqual(txt.content, [{ type: 'text', text: 'héllo\n' }])

        // 10 calls at once, on one sandbox.
        const t0 = Date.now()
        const many = await Promise.all(Array.from({ length: 10 }, (_, i) =>
          client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: `echo ${i}` } })))
        console.log(`# ${name}: 10 concurrent run_command calls in ${Date.now() - t0} ms`)
        many.forEach((r, i) => assert.equal(r.structuredContent.stdout, `${i}\n`))

        const k = await client.callTool({ name: 'kill_sandbox', arguments: { sandbox_id: id } })
        assert.equal(k.isError, false, text(k))
        const gone = await client.callTool({ name: 'run_command', arguments: { sandbox_id: id, command: 'true' } })
        assert.equal(gone.isError, true)
        assert.match(text(gone), /no such sandbox .*create_sandbox/)
      })

      test('a command past its timeout is killed: exit 137, timed_out', async () => {
        const r = await client.callTool({ name: 'run_command', arguments: { command: 'echo started; sleep 30', timeout_seconds: 1 } })
        assert.equal(r.isError, false, text(r))
        assert.equal(r.structuredContent.timed_out, true)
        assert.equal(r.structuredContent.exit_code, 137)
        assert.equal(r.structuredContent.stdout, 'started\n')
        assert.match(text(r), /timed out/)
      })

      test('tool errors a model can act on, bad arguments, unknown tools', async () => {
        // The base image has no node: said so, as a tool error.
        const js = await client.callTool({ name: 'run_code', arguments: { language: 'javascript', code: 'console.log(1)' } })
        assert.equal(js.isError, true)
        assert.match(text(js), /node is not installed/)
        const bad = await client.callTool({ name: 'run_code', arguments: { language: 'python' } })
        assert.equal(bad.isError, true)
        assert.match(text(bad), /argument 'code' is required/)
        const typed = await client.callTool({ name: 'list_files', arguments: { sandbox_id: 'x', path: '/', depth: 'deep' } })
        assert.match(text(typed), /argument 'depth' must be an integer/)
        const rel = await client.callTool({ name: 'read_file', arguments: { sandbox_id: 'x', path: 'a.txt' } })
        assert.match(text(rel), /absolute path/)
        await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }),
          e => e instanceof McpError && e.code === -32602 && /no_such_tool/.test(e.message))
        await assert.rejects(client.request({ method: 'resources/list', params: {} }, (await import('@modelcontextprotocol/sdk/types.js')).ListResourcesResultSchema),
          e => e instanceof McpError && e.code === -32601)
      })
    })
  }

  test('the HTTP transport\'s rules: token, session, GET, DELETE', async () => {
    const url = `${daemon.url}/mcp`
    const auth = { Authorization: `Bearer ${daemon.token}` }
    const json = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' }
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })
    assert.equal((await fetch(url, { method: 'POST', headers: json, body: init })).status, 401)
    const r = await fetch(url, { method: 'POST', headers: { ...auth, ...json }, body: init })
    assert.equal(r.status, 200)
    assert.equal((await r.json()).result.protocolVersion, '2025-06-18')
    const sid = r.headers.get('mcp-session-id')
    assert.match(sid, /^[0-9a-f]{32}$/)
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' })
    assert.equal((await fetch(url, { method: 'POST', headers: { ...auth, ...json }, body: ping })).status, 400)
    assert.equal((await fetch(url, { method: 'POST', headers: { ...auth, ...json, 'Mcp-Session-Id': 'f'.repeat(32) }, body: ping })).status, 404)
    const bad = await fetch(url, { method: 'POST', headers: { ...auth, ...json, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '1999-01-01' }, body: ping })
    assert.equal(bad.status, 400)
    // Only SSE accepted: one event.
    const sse = await fetch(url, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json', Accept: 'text/event-stream', 'Mcp-Session-Id': sid }, body: ping })
    assert.equal(sse.headers.get('content-type'), 'text/event-stream')
    assert.equal(await sse.text(), 'event: message\ndata: {"id":2,"jsonrpc":"2.0","result":{}}\n\n')
    const note = await fetch(url, { method: 'POST', headers: { ...auth, ...json, 'Mcp-Session-Id': sid }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })
    assert.equal(note.status, 202)
    const parse = await fetch(url, { method: 'POST', headers: { ...auth, ...json, 'Mcp-Session-Id': sid }, body: '{oops' })
    assert.equal(parse.status, 400)
    assert.equal((await parse.json()).error.code, -32700)
    const get = await fetch(url, { headers: { ...auth, Accept: 'text/event-stream', 'Mcp-Session-Id': sid } })
    assert.equal(get.status, 405)
    assert.equal(get.headers.get('allow'), 'POST, DELETE')
    assert.equal((await fetch(url, { method: 'DELETE', headers: { ...auth, 'Mcp-Session-Id': sid } })).status, 204)
    assert.equal((await fetch(url, { method: 'POST', headers: { ...auth, ...json, 'Mcp-Session-Id': sid }, body: ping })).status, 404)
  })

  test('the MCP Inspector\'s CLI lists the tools over both transports', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-mcp-inspector-'))
    const env = { ...process.env, HOME: home, MCP_CATALOG_PATH: path.join(home, 'mcp.json') }
    try {
      const runs = {
        stdio: ['--cli', WARMBOX, 'mcp', '--socket', daemon.socket, '--method', 'tools/list'],
        http: ['--cli', `${daemon.url}/mcp`, '--transport', 'http', '--header', `Authorization: Bearer ${daemon.token}`, '--method', 'tools/list']
      }
      for (const [name, args] of Object.entries(runs)) {
        const r = spawnSync(INSPECTOR, args, { env, encoding: 'utf8', timeout: 120000 })
        assert.equal(r.status, 0, `${name}: ${r.stderr}\n${r.stdout}`)
        const names = JSON.parse(r.stdout).tools.map(t => t.name).sort()
        assert.deepEqual(names, [...TOOLS].sort(), name)
      }
    } finally {
      fs.rmSync(home, { recursive: true, force: true })
    }
  })

  test('no sandbox of the tests is left running', async () => {
    const r = spawnSync(WARMBOX, ['sandbox', 'ls', '--json', '--socket', daemon.socket], { encoding: 'utf8' })
    assert.deepEqual(JSON.parse(r.stdout), [])
  })
})
