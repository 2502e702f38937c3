// The host loads every dist/functions/*.js; each registration file also stands alone, so this
// entry only makes "import the whole app" explicit. Nothing is re-exported: importing it registers.
import './http-jobs';
import './http-health';
import './servicebus-triggers';
import './http-control';
