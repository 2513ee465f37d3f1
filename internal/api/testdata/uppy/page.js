// The browser side of intake's Uppy test (browser_test.go): an unmodified @uppy/aws-s3 client pointed
// at intake's Companion-compatible routes, plus a plain fetch() PUT through /v1/uploads. Bundled by
// esbuild; the page calls window.runUploads() and the driver reads its result.
import Uppy from '@uppy/core'
import AwsS3 from '@uppy/aws-s3'

// fill makes deterministic content the Go test can check by size (and first bytes).
function fill(size, seed) {
  const buf = new Uint8Array(size)
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed) % 251
  return buf
}

async function uppyUpload(name, type, size, multipart) {
  const uppy = new Uppy({ autoProceed: false })
  uppy.use(AwsS3, { companionEndpoint: window.location.origin, shouldUseMultipart: multipart, limit: 4 })
  // The app's own metadata: Uppy sends it with /s3/params and POST /s3/multipart, intake keeps it
  // with the intent and returns it in the upload's webhook.
  uppy.addFile({ name, type, data: new Blob([fill(size, name.length)], { type }), meta: { order: `ord-${name}` } })
  const result = await uppy.upload()
  const failed = (result.failed || []).map((f) => `${f.name}: ${f.error}`)
  const ok = (result.successful || []).map((f) => ({ name: f.name, key: f.response?.body?.key, location: f.response?.body?.location }))
  uppy.destroy()
  return { ok, failed }
}

async function v1Put(name, type, size) {
  const res = await fetch('/v1/uploads', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ filename: name, content_type: type, size, method: 'put', metadata: { order: `ord-${name}` } }),
  })
  const intent = await res.json()
  if (res.status !== 201) return { failed: [`create: ${res.status} ${JSON.stringify(intent)}`] }
  const headers = Object.fromEntries(Object.entries(intent.headers).filter(([k]) => k.toLowerCase() !== 'content-length'))
  const put = await fetch(intent.url, { method: 'PUT', headers, body: new Blob([fill(size, 7)], { type }) })
  if (!put.ok) return { failed: [`put: ${put.status} ${await put.text()}`] }
  return { ok: [{ name, key: intent.key, etag: put.headers.get('ETag') }] }
}

window.runUploads = async ({ smallSize, bigSize }) => {
  const out = {}
  try {
    out.small = await uppyUpload('small photo.png', 'image/png', smallSize, false)
    out.big = await uppyUpload('big video.bin', 'application/octet-stream', bigSize, true)
    out.put = await v1Put('plain put.txt', 'text/plain', smallSize)
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e)
  }
  return out
}
window.pageReady = true
