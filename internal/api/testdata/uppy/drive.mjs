// Drives Debian's Chromium with playwright-core (no browser download): opens the page served by the
// Go test, sets the auth cookie, runs window.runUploads() and prints its result as JSON on stdout.
//   node drive.mjs <pageURL> <cookieName> <token> <smallSize> <bigSize> <userDataDir>
import { chromium } from 'playwright-core'

const [pageURL, cookieName, token, smallSize, bigSize, userDataDir] = process.argv.slice(2)
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
let code = 0
try {
  await context.addCookies([{ name: cookieName, value: token, url: pageURL, sameSite: 'Strict', httpOnly: true }])
  const page = await context.newPage()
  const logs = []
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`))
  page.on('pageerror', (e) => logs.push(`pageerror: ${e}`))
  await page.goto(pageURL)
  await page.waitForFunction(() => window.pageReady === true, null, { timeout: 30000 })
  const result = await page.evaluate((a) => window.runUploads(a), { smallSize: Number(smallSize), bigSize: Number(bigSize) })
  result.console = logs
  process.stdout.write(JSON.stringify(result) + '\n')
} catch (e) {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n')
  code = 1
} finally {
  await context.close()
}
process.exit(code)
