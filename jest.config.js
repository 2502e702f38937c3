/** Tests run against a real PostgreSQL: globalSetup finds or starts one, each file gets its own database. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/tests'],
  testMatch: ['**/*.test.ts'],
  // Transpile only: `npm test` runs tsc --noEmit before jest, so types are checked once, not per file.
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { module: 'commonjs', moduleResolution: 'node', target: 'ES2022', isolatedModules: true } }] },
  // The package's public entry points, as tsconfig.json "paths" maps them (jobs/ imports 'coremachine').
  moduleNameMapper: {
    '^coremachine$': '<rootDir>/package/index.ts',
    '^coremachine/azure-functions$': '<rootDir>/package/azure-functions.ts',
    '^coremachine/testing$': '<rootDir>/package/testing.ts',
  },
  globalSetup: '<rootDir>/tests/support/global-setup.ts',
  globalTeardown: '<rootDir>/tests/support/global-teardown.ts',
  testTimeout: 60000,
  maxWorkers: 2,
};
