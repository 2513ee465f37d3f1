import { createServer } from 'node:http'
import { createHmac, timingSafeEqual } from 'node:crypto'
const key = Buffer.from(process.env.INTAKE_WEBHOOK_SECRET.replace(/^whsec_/, ''), 'base64')
createServer(async (req, res) => {
  const chunks = []; let size = 0 // raw bytes: a string would split multi-byte characters across chunks
  for await (const chunk of req) if ((size += chunk.length) <= 1 << 20) chunks.push(chunk)
  if (size > 1 << 20) return res.writeHead(413).end()
  const body = Buffer.concat(chunks)
  const [id, ts, sigs = ''] = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((h) => req.headers[h])
  const want = Buffer.from(createHmac('sha256', key).update(`${id}.${ts}.`).update(body).digest('base64'))
  const signed = sigs.split(' ').some((s) => { const got = Buffer.from(s.slice(3)); return s.startsWith('v1,') && got.length === want.length && timingSafeEqual(got, want) })
  if (!signed || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return res.writeHead(401).end()
  const event = JSON.parse(body) // {id, type: 'upload.valid', timestamp, data: {upload_id, status, metadata, …}}
  console.log(event.type, event.data.upload_id, JSON.stringify(event.data.metadata)) // de-duplicate on event.id
  res.writeHead(204).end()
}).listen(process.env.PORT ?? 3000)
