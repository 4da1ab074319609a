// The web client's browser suite. Run by the end-to-end test
// `browser::the_web_client_in_chromium` (which starts the service and sets
// MEDIA_URL and the rest), or by hand against a running service:
//   MEDIA_URL=http://127.0.0.1:8080 MEDIA_ADMIN_TOKEN=… MEDIA_FIXTURES=… npx playwright test
// Chromium is Debian's (/usr/bin/chromium, 156), the one Playwright 1.64.1
// was built against; Playwright never downloads a browser here.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: ".",
  testMatch: "*.spec.mjs",
  timeout: 240_000,
  expect: { timeout: 60_000 },
  workers: 1,
  fullyParallel: false,
  retries: 0,
  reporter: [["list"]],
  outputDir: process.env.MEDIA_BROWSER_OUT || "test-results",
  use: {
    baseURL: process.env.MEDIA_URL || "http://127.0.0.1:8080",
    viewport: { width: 1280, height: 800 },
    actionTimeout: 30_000,
    launchOptions: {
      executablePath: process.env.MEDIA_CHROMIUM || "/usr/bin/chromium",
      // As root in a sandboxed CI machine with no network but loopback:
      // no setuid sandbox, no background calls to Google's hosts.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
      ],
    },
  },
});
