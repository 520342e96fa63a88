// The official E2B SDK's files (envd's filesystem.Filesystem service and
// /files, emulated by the daemon: docs/e2b.md) against a real warmbox daemon.
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { FileNotFoundError, FileType, FilesystemEventType, Sandbox } from 'e2b'

import { Daemon, eventually, skipReason } from './daemon.mjs'

const skip = skipReason()

describe('E2B files', { skip: skip || false }, () => {
  let d, s

  before(async () => {
    d = await new Daemon().start()
    s = await Sandbox.create({ ...d.opts, timeoutMs: 300_000 })
  })
  after(async () => {
    if (!d) return
    if (s) await s.kill().catch(() => {})
    const problems = await d.stop()
    assert.deepEqual(problems, [])
  })

  it('writes and reads text, relative to the home, owned by the user', async () => {
    const w = await s.files.write('notes/a.txt', 'hello world')
    assert.equal(w.path, '/home/user/notes/a.txt')
    assert.equal(await s.files.read('/home/user/notes/a.txt'), 'hello world')
    const info = await s.files.getInfo('notes/a.txt')
    assert.equal(info.type, FileType.FILE)
    assert.equal(info.size, 11)
    assert.equal(info.owner, 'user')
  })

  it('round-trips binary data byte-exact', async () => {
    const data = crypto.randomBytes(3 * 1024 * 1024 + 7)
    await s.files.write('/tmp/blob.bin', data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
    const back = Buffer.from(await s.files.read('/tmp/blob.bin', { format: 'bytes' }))
    assert.equal(back.length, data.length)
    assert.ok(back.equals(data))
  })

  it('writes several files at once', async () => {
    const infos = await s.files.write([{ path: '/tmp/m/1.txt', data: 'one' }, { path: '/tmp/m/2.txt', data: 'two' }])
    assert.deepEqual(infos.map(i => i.path).sort(), ['/tmp/m/1.txt', '/tmp/m/2.txt'])
    assert.equal(await s.files.read('/tmp/m/2.txt'), 'two')
  })

  it('lists with depth, makes dirs, renames, removes, exists', async () => {
    assert.equal(await s.files.makeDir('/tmp/tree/sub'), true)
    assert.equal(await s.files.makeDir('/tmp/tree/sub'), false, 'already there')
    await s.files.write('/tmp/tree/sub/f.txt', 'x')
    const one = await s.files.list('/tmp/tree')
    assert.deepEqual(one.map(e => e.name), ['sub'])
    assert.equal(one[0].type, FileType.DIR)
    const two = await s.files.list('/tmp/tree', { depth: 2 })
    assert.deepEqual(two.map(e => e.path).sort(), ['/tmp/tree/sub', '/tmp/tree/sub/f.txt'])
    const moved = await s.files.rename('/tmp/tree/sub/f.txt', '/tmp/tree/g.txt')
    assert.equal(moved.path, '/tmp/tree/g.txt')
    assert.equal(await s.files.exists('/tmp/tree/sub/f.txt'), false)
    assert.equal(await s.files.exists('/tmp/tree/g.txt'), true)
    await s.files.remove('/tmp/tree')
    assert.equal(await s.files.exists('/tmp/tree'), false)
  })

  it('a missing file is FileNotFoundError', async () => {
    await assert.rejects(s.files.read('/no/such/file'), FileNotFoundError)
    await assert.rejects(s.files.list('/no/such/dir'), FileNotFoundError)
  })

  it('a user cannot read what only root can', async () => {
    await assert.rejects(s.files.read('/etc/shadow'))
    assert.ok((await s.files.read('/etc/shadow', { user: 'root' })).length > 0)
  })

  it('watches a directory', async () => {
    await s.files.makeDir('/tmp/watched')
    const events = []
    const w = await s.files.watchDir('/tmp/watched', e => events.push(e))
    await s.files.write('/tmp/watched/new.txt', 'x')
    await s.files.remove('/tmp/watched/new.txt')
    assert.ok(await eventually(() =>
      events.some(e => e.name === 'new.txt' && e.type === FilesystemEventType.CREATE) &&
      events.some(e => e.name === 'new.txt' && e.type === FilesystemEventType.REMOVE), 10_000),
    JSON.stringify(events))
    await w.stop()
  })
})
