// esbuild bundles the stylesheets imported for their side effect (build.mjs); tsc only needs
// to know that such imports exist.
declare module '*.css';
