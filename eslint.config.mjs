// Type-aware lint: no-floating-promises catches the fire-and-forget work that leaves jobs stuck.
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // templates/app/ is the app `coremachine init` writes, with its own tsconfig and style (node:test's
  // un-awaited test() calls): tsconfig.json type-checks it against the package's entry points instead.
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.coremachine/**', '*.config.*', 'jest.*.js', 'templates/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
);
