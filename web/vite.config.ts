import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * Production build into web/dist, served by the server on the API's port.
 * `npm run dev -w web` serves the app with hot reload and proxies the API to
 * a server on :3000 (`npm start` in another terminal).
 */
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The chunk-size report reads the manifest to find each page's initial JavaScript.
    manifest: true,
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        // Libraries change less often than the app: their own chunks stay cached across deploys.
        manualChunks(id) {
          if (/node_modules\/(react|react-dom|scheduler)\//.test(id)) return 'react';
          if (id.includes('node_modules/react-router/')) return 'router';
          if (id.includes('node_modules/@tanstack/')) return 'tanstack';
          return undefined;
        },
      },
    },
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:3000', changeOrigin: false },
      '/v1': { target: 'http://127.0.0.1:3000', changeOrigin: false },
      '/health': { target: 'http://127.0.0.1:3000', changeOrigin: false },
    },
  },
});
