export * from './status';
export * from './error-shape';
export * from './messages';
export * from './records';
export * from './job-definition';
export * from './api';
export * from './task-failure';
export * from './control-actions';
