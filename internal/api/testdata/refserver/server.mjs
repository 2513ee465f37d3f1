// Reference presign server for intake's benchmark (bench_test.go), written the way many apps do it
// today: Hono on @hono/node-server, the AWS SDK v3 S3 client and @aws-sdk/s3-request-presigner. Same
// route and signing inputs as intake's POST /v1/uploads (API key, key {prefix}/{owner}/{uuid}/{name},
// signed Content-Type and Content-Length, 5-minute expiry); no database row.
//
// Environment: S3_ENDPOINT, BUCKET, API_KEY, OWNER, MAX_SIZE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
// Prints {"port": N} on stdout once listening on 127.0.0.1.
import { Hono } from 'hono'
import { serve } from '@hono/node-server'
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { randomUUID } from 'node:crypto'

const { S3_ENDPOINT, BUCKET, API_KEY, OWNER } = process.env
const MAX_SIZE = Number(process.env.MAX_SIZE || 5 * 1024 ** 3)
const EXPIRES_IN = 300

const s3 = new S3Client({
  region: 'us-east-1',
  endpoint: S3_ENDPOINT,
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
})

const app = new Hono()
app.post('/v1/uploads', async (c) => {
  if (c.req.header('x-api-key') !== API_KEY) return c.json({ error: 'unauthorized' }, 401)
  let body
  try {
    body = await c.req.json()
  } catch {
    return c.json({ error: 'invalid JSON' }, 400)
  }
  const { filename, content_type: contentType, size } = body
  if (typeof filename !== 'string' || !filename || filename.length > 255 || /[/\\\x00-\x1f]/.test(filename) ||
      typeof contentType !== 'string' || !/^[\w.+-]+\/[\w.+-]+/.test(contentType) ||
      !Number.isInteger(size) || size < 0 || size > MAX_SIZE) {
    return c.json({ error: 'invalid request' }, 400)
  }
  const key = `uploads/${OWNER}/${randomUUID()}/${filename}`
  const url = await getSignedUrl(
    s3,
    new PutObjectCommand({ Bucket: BUCKET, Key: key, ContentType: contentType, ContentLength: size }),
    { expiresIn: EXPIRES_IN, signableHeaders: new Set(['content-type', 'content-length']) },
  )
  return c.json({
    key,
    method: 'put',
    url,
    headers: { 'Content-Type': contentType, 'Content-Length': String(size) },
    expires_at: new Date(Date.now() + EXPIRES_IN * 1000).toISOString(),
  }, 201)
})

serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) => {
  process.stdout.write(JSON.stringify({ port: info.port }) + '\n')
})
